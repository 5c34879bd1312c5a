"""Checkpoint layouts, strict backbone loading with one readable error, and safe reading."""

from __future__ import annotations

import hashlib
import os
import sys
from collections import OrderedDict
from pathlib import Path

import pytest
import torch
from torch import nn

from lfbtool.errors import LfbError
from lfbtool.models import (
    BackboneSpec,
    Normalization,
    checkpoint_sha256,
    create_backbone,
    load_backbone_weights,
    read_checkpoint,
)
from lfbtool.models.resnet3d import ConvBN3d

NORM = Normalization((0.0, 0.0, 0.0), (1.0, 1.0, 1.0), 255)


class TinyMM(nn.Module):
    """Two ConvModules: the MMAction2 key layout at toy size."""

    spec = BackboneSpec("tiny_mm", 4, 1, NORM, "test", checkpoint_prefix="backbone.")

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = ConvBN3d(3, 4, (1, 3, 3), padding=(0, 1, 1))
        self.layer1 = nn.Sequential(ConvBN3d(4, 4, (3, 1, 1), padding=(1, 0, 0)))


class TinyTV(nn.Module):
    """A torchvision-like trunk whose checkpoints also hold a classifier ``fc``."""

    spec = BackboneSpec("tiny_tv", 4, 1, NORM, "test", ignored_prefixes=("fc.", "classifier."))

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv3d(3, 4, 1), nn.BatchNorm3d(4))


def _random_state(model: nn.Module, seed: int) -> OrderedDict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return OrderedDict(
        (k, torch.rand(v.shape, generator=generator).to(v.dtype) if v.is_floating_point() else v.clone() + 3)
        for k, v in model.state_dict().items()
    )


def _assert_loaded(model: nn.Module, state: dict[str, torch.Tensor]) -> None:
    for key, value in model.state_dict().items():
        assert torch.equal(value, state[key]), key


def test_plain_state_dict(tmp_path: Path) -> None:
    state = _random_state(TinyMM(), 0)
    torch.save(state, tmp_path / "plain.pth")
    loaded = read_checkpoint(tmp_path / "plain.pth")
    assert list(loaded) == list(state)
    model = TinyMM()
    load_backbone_weights(model, loaded, source="plain.pth")
    _assert_loaded(model, state)


def test_mmaction_detector_checkpoint_takes_backbone_part(tmp_path: Path) -> None:
    state = _random_state(TinyMM(), 1)
    full = {f"backbone.{k}": v for k, v in state.items()}
    full["roi_head.bbox_head.fc_cls.weight"] = torch.zeros(81, 2048)
    full["cls_head.fc.bias"] = torch.zeros(3)
    torch.save(
        {"meta": {"epoch": 20, "config": "model = dict(...)"}, "state_dict": full}, tmp_path / "det.pth"
    )
    model = TinyMM()
    load_backbone_weights(model, read_checkpoint(tmp_path / "det.pth"), source="det.pth")
    _assert_loaded(model, state)


def test_module_prefix_stripped(tmp_path: Path) -> None:
    state = _random_state(TinyMM(), 2)
    torch.save({"state_dict": {f"module.backbone.{k}": v for k, v in state.items()}}, tmp_path / "ddp.pth")
    loaded = read_checkpoint(tmp_path / "ddp.pth")
    assert all(key.startswith("backbone.") for key in loaded)
    model = TinyMM()
    load_backbone_weights(model, loaded, source="ddp.pth")
    _assert_loaded(model, state)


def test_model_key_layout(tmp_path: Path) -> None:
    state = _random_state(TinyMM(), 3)
    torch.save({"model": state, "epoch": 3}, tmp_path / "m.pth")
    assert list(read_checkpoint(tmp_path / "m.pth")) == list(state)


def test_mmengine_layout_with_missing_classes(tmp_path: Path) -> None:
    """message_hub holds an object of a class that no longer exists when the file is read."""
    module_dir = tmp_path / "mods"
    module_dir.mkdir()
    (module_dir / "lfb_fake_mmengine.py").write_text(
        "class HistoryBuffer:\n"
        "    def __init__(self):\n"
        "        self._log_history = [0.5, 0.25]\n"
        "        self.max_length = 1000000\n"
        "class ConfigDict(dict):\n"
        "    pass\n"
    )
    sys.path.insert(0, str(module_dir))
    try:
        import lfb_fake_mmengine as fake
    finally:
        sys.path.remove(str(module_dir))
    state = _random_state(TinyMM(), 4)
    checkpoint = {
        "meta": {"mmengine_version": "0.10.3", "cfg": fake.ConfigDict(type="FastRCNN"), "epoch": 20},
        "state_dict": {f"backbone.{k}": v for k, v in state.items()},
        "message_hub": {"log_scalars": {"train/loss": fake.HistoryBuffer()}, "runtime_info": {"iter": 7}},
        "optimizer": {"state": {0: {"momentum_buffer": torch.ones(2)}}, "param_groups": [{"lr": 0.1}]},
    }
    torch.save(checkpoint, tmp_path / "mmengine.pth")
    del sys.modules["lfb_fake_mmengine"]
    os.remove(module_dir / "lfb_fake_mmengine.py")
    model = TinyMM()
    load_backbone_weights(model, read_checkpoint(tmp_path / "mmengine.pth"), source="mmengine.pth")
    _assert_loaded(model, state)


def test_wrong_shapes_missing_and_unexpected_in_one_error() -> None:
    model = create_backbone("slowonly_r50")
    state = {f"backbone.{k}": v.clone() for k, v in model.state_dict().items()}
    state["backbone.layer3.0.conv1.conv.weight"] = torch.zeros(256, 512, 1, 1, 1)  # 2D-style, not inflated
    del state["backbone.layer4.2.conv3.bn.running_var"]
    state["backbone.fc_extra.weight"] = torch.zeros(2)
    state["roi_head.bbox_head.fc_cls.weight"] = torch.zeros(81, 2048)  # ignored, not unexpected
    with pytest.raises(LfbError) as info:
        load_backbone_weights(model, state, source="ckpt/slowonly.pth")
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith("ckpt/slowonly.pth: checkpoint does not fit slowonly_r50: ")
    assert "missing keys [layer4.2.conv3.bn.running_var]" in message
    assert "unexpected keys [fc_extra.weight]" in message
    assert (
        "shape mismatch layer3.0.conv1.conv.weight: checkpoint (256, 512, 1, 1, 1) vs model (256, 512, 3, 1, 1)"
        in message
    )
    assert "roi_head" not in message


def test_long_key_lists_are_truncated() -> None:
    model = create_backbone("slowonly_r50")
    with pytest.raises(LfbError) as info:
        load_backbone_weights(
            model, {"backbone.conv1.conv.weight": torch.zeros(64, 3, 1, 7, 7)}, source="x.pth"
        )
    total = len([k for k in model.state_dict() if not k.endswith("num_batches_tracked")]) - 1
    assert f"(+{total - 8} more)" in str(info.value)
    assert "missing keys [conv1.bn.weight, conv1.bn.bias" in str(info.value)


def test_backbone_only_checkpoint_without_num_batches_tracked() -> None:
    model = TinyMM()
    state = {k: v for k, v in _random_state(model, 5).items() if not k.endswith("num_batches_tracked")}
    load_backbone_weights(model, state, source="old.pth")
    _assert_loaded(model, {**model.state_dict(), **state})


def test_torchvision_classifier_checkpoint_drops_fc(tmp_path: Path) -> None:
    state = _random_state(TinyTV(), 6)
    full = {**state, "fc.weight": torch.zeros(400, 512), "fc.bias": torch.zeros(400)}
    torch.save(full, tmp_path / "tv.pth")
    model = TinyTV()
    load_backbone_weights(model, read_checkpoint(tmp_path / "tv.pth"), source="tv.pth")
    _assert_loaded(model, state)


def test_torchvision_trunk_inside_detector_checkpoint() -> None:
    state = _random_state(TinyTV(), 9)
    full = {f"backbone.{k}": v for k, v in state.items()}
    full["backbone.fc.weight"] = torch.zeros(400, 4)
    full["roi_head.bbox_head.fc_cls.weight"] = torch.zeros(81, 4)
    model = TinyTV()
    load_backbone_weights(model, full, source="tv_det.pth")
    _assert_loaded(model, state)


def test_half_precision_checkpoint_is_cast() -> None:
    model = TinyTV()
    state = {k: (v.half() if v.is_floating_point() else v) for k, v in _random_state(model, 7).items()}
    load_backbone_weights(model, state, source="half.pth")
    assert model.stem[0].weight.dtype == torch.float32
    assert torch.equal(model.stem[0].weight, state["stem.0.weight"].float())


class _Payload:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_checkpoint_that_would_run_code_is_refused(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    state = _random_state(TinyMM(), 8)
    torch.save({"state_dict": state, "meta": {"hook": _Payload(marker)}}, tmp_path / "evil.pth")
    with pytest.raises(LfbError, match=r"evil\.pth: refused to load"):
        read_checkpoint(tmp_path / "evil.pth")
    assert not marker.exists()


def test_missing_and_non_checkpoint_files(tmp_path: Path) -> None:
    with pytest.raises(LfbError, match=r"absent\.pth: no such file"):
        read_checkpoint(tmp_path / "absent.pth")
    torch.save(["not", "a", "dict"], tmp_path / "list.pth")
    with pytest.raises(LfbError, match=r"list\.pth: not a checkpoint"):
        read_checkpoint(tmp_path / "list.pth")
    torch.save({"weights": "somewhere else"}, tmp_path / "str.pth")
    with pytest.raises(LfbError, match=r"str\.pth: not a checkpoint: key 'weights' holds str"):
        read_checkpoint(tmp_path / "str.pth")
    (tmp_path / "text.pth").write_text("hello")
    with pytest.raises(LfbError, match=r"text\.pth: not a readable checkpoint"):
        read_checkpoint(tmp_path / "text.pth")


def test_checkpoint_sha256(tmp_path: Path) -> None:
    payload = os.urandom(3 * (1 << 20) + 17)  # spans several read chunks
    (tmp_path / "blob.pth").write_bytes(payload)
    assert checkpoint_sha256(tmp_path / "blob.pth") == hashlib.sha256(payload).hexdigest()
    with pytest.raises(LfbError, match=r"nothing\.pth: no such file"):
        checkpoint_sha256(tmp_path / "nothing.pth")


def test_a_plain_state_dict_with_its_metadata_loads(tmp_path):
    """``torch.save(model.state_dict())`` pickles an OrderedDict whose ``_metadata`` attribute is set by
    BUILD: the bounded unpickler admits exactly that (attributes of an OrderedDict), not more."""
    import torchvision

    from lfbtool.models.checkpoint import read_checkpoint

    model = torchvision.models.resnet18()
    path = tmp_path / "plain.pth"
    torch.save(model.state_dict(), path)
    loaded = read_checkpoint(path)
    assert loaded.keys() == model.state_dict().keys()
    assert all(torch.equal(loaded[k], v) for k, v in model.state_dict().items())
