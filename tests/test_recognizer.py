"""Recognizers: clip averaging, chunked views, checkpoint layouts, the 2D TSN path, loss parsing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from lfbtool.errors import LfbError
from lfbtool.models.checkpoint import load_strict
from lfbtool.models.normalization import Normalization
from lfbtool.models.recognizer_factory import build_recognizer
from lfbtool.models.recognizers import BaseRecognizer, Recognizer3D
from lfbtool.models.registry import MMACTION_K400_TEST
from lfbtool.models.training import parse_losses
from lfbtool.models.weights import resolve_weights

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def slowonly():
    torch.manual_seed(0)
    recognizer = build_recognizer("slowonly_r50", num_classes=5).recognizer.eval()
    for module in recognizer.modules():  # non-trivial BN statistics so every layer matters
        if isinstance(module, torch.nn.BatchNorm3d):
            module.running_mean.uniform_(-0.1, 0.1)
            module.running_var.uniform_(0.5, 1.5)
    return recognizer


def test_average_clip_matches_numpy_reference():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(2 * 3, 4)).astype(np.float32)  # 2 videos x 3 views
    per_video = logits.reshape(2, 3, 4).astype(np.float64)
    exp = np.exp(per_video - per_video.max(axis=2, keepdims=True))
    prob = (exp / exp.sum(axis=2, keepdims=True)).mean(axis=1)
    scores = torch.from_numpy(logits)
    np.testing.assert_allclose(
        BaseRecognizer.average_clip(scores, 3, "score").numpy(), per_video.mean(axis=1), rtol=1e-6
    )
    np.testing.assert_allclose(BaseRecognizer.average_clip(scores, 3, "prob").numpy(), prob, rtol=1e-6)
    none = BaseRecognizer.average_clip(scores, 3, "none")
    assert none.shape == (2, 3, 4) and torch.equal(none.flatten(0, 1), scores)
    with pytest.raises(LfbError, match="--average-clips"):
        BaseRecognizer.average_clip(scores, 3, "max")


class PerViewBackbone(nn.Module):
    """Runs every view on its own, so its output cannot depend on how views are batched."""

    out_channels = 6

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv3d(3, self.out_channels, kernel_size=3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([torch.relu(self.conv(view[None])) for view in x])


def test_max_testing_views_chunks_concatenate_in_order_bitwise():
    torch.manual_seed(1)
    model = Recognizer3D(
        PerViewBackbone(),
        4,
        normalization=Normalization((128.0,) * 3, (64.0,) * 3, 255),
        defaults=MMACTION_K400_TEST,
        dropout=0.0,
    ).eval()
    model.cls_head.fc_cls = PerRowLinear(model.cls_head.fc_cls)
    imgs = torch.randint(0, 256, (2, 6, 3, 2, 8, 8), dtype=torch.uint8)
    for mode in ("score", "prob", "none"):
        full = model.forward_test(imgs, average_clips=mode)
        for chunk in (1, 3, 4, 12):
            assert torch.equal(model.forward_test(imgs, average_clips=mode, max_testing_views=chunk), full)


class PerRowLinear(nn.Module):
    """The same linear map, applied one row at a time (batch-size independent)."""

    def __init__(self, linear: nn.Linear) -> None:
        super().__init__()
        self.linear = linear

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.linear(row[None]) for row in x])


def test_max_testing_views_gives_the_same_scores_with_slowonly(slowonly):
    # CPU conv and matmul kernels pick different blockings for different batch sizes, so a real
    # network agrees across chunkings to float32 rounding (observed: 3e-6 on logits of ~7), not
    # bit for bit; the bitwise check of the chunking itself is the test above.
    torch.manual_seed(1)
    imgs = torch.randint(0, 256, (1, 6, 3, 4, 32, 32), dtype=torch.uint8)
    full = slowonly.forward_test(imgs, average_clips="none")
    for chunk in (1, 3, 6):
        torch.testing.assert_close(
            slowonly.forward_test(imgs, average_clips="none", max_testing_views=chunk),
            full,
            rtol=1e-5,
            atol=1e-5,
        )
    assert torch.equal(slowonly.forward_test(imgs, average_clips="none", max_testing_views=6), full)
    # Each view alone is what chunks of one give, bit for bit.
    alone = torch.cat([slowonly(view[None]) for view in imgs[0]])
    assert torch.equal(alone, slowonly.forward_test(imgs, average_clips="none", max_testing_views=1)[0])


def test_slowonly_checkpoint_in_mmaction_layout_loads_strictly(tmp_path, slowonly):
    state = slowonly.state_dict()
    assert "backbone.conv1.conv.weight" in state and "backbone.layer3.0.conv1.conv.weight" in state
    assert set(k for k in state if k.startswith("cls_head.")) == {
        "cls_head.fc_cls.weight",
        "cls_head.fc_cls.bias",
    }
    path = tmp_path / "recognizer3d.pth"
    torch.save({"meta": {"epoch": 3}, "state_dict": {k: v.clone() for k, v in state.items()}}, path)
    loaded = build_recognizer("slowonly_r50", checkpoint=str(path)).recognizer
    assert loaded.num_classes == 5  # from cls_head.fc_cls.weight
    own = loaded.state_dict()
    assert own.keys() == state.keys() and all(torch.equal(own[k], state[k]) for k in state)
    imgs = torch.randint(0, 256, (1, 2, 3, 4, 32, 32), dtype=torch.uint8)
    assert torch.equal(loaded.eval().forward_test(imgs), slowonly.forward_test(imgs))


def test_checkpoint_mismatch_names_the_keys(tmp_path, slowonly):
    state = dict(slowonly.state_dict())
    state.pop("cls_head.fc_cls.bias")
    state["cls_head.extra.weight"] = torch.zeros(1)
    with pytest.raises(LfbError) as info:
        load_strict(slowonly, state, source="ckpt.pth", target="slowonly_r50")
    message = str(info.value)
    assert "ckpt.pth" in message and "missing keys [cls_head.fc_cls.bias]" in message
    assert "unexpected keys [cls_head.extra.weight]" in message and "\n" not in message


def test_torchvision_video_checkpoint_infers_classes(tmp_path):
    torch.manual_seed(0)
    model = torchvision.models.get_model("r3d_18", weights=None, num_classes=6).eval()
    path = tmp_path / "r3d.pth"
    torch.save(model.state_dict(), path)
    recognizer = build_recognizer("r3d_18", checkpoint=str(path)).recognizer.eval()
    assert recognizer.num_classes == 6 and recognizer.defaults.crop_size == 112
    x = torch.randint(0, 256, (2, 3, 4, 32, 32), dtype=torch.uint8)
    mean = torch.tensor([0.43216, 0.394666, 0.37645]).view(1, 3, 1, 1, 1)
    std = torch.tensor([0.22803, 0.22145, 0.216989]).view(1, 3, 1, 1, 1)
    with torch.no_grad():
        expected = model((x.float() / 255 - mean) / std)
        torch.testing.assert_close(recognizer(x), expected, rtol=1e-5, atol=1e-5)


def test_tsn_2d_scores_are_frame_scores_averaged():
    torch.manual_seed(0)
    recognizer = build_recognizer("torchvision.resnet18", num_classes=3).recognizer.eval()
    assert recognizer.is_2d and recognizer.defaults.clip_len == 1
    frames = torch.randint(0, 256, (1, 4, 3, 1, 32, 32), dtype=torch.uint8)  # 4 single-frame views
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    with torch.no_grad():
        per_frame = recognizer.model((frames[0, :, :, 0].float() / 255 - mean) / std)
    torch.testing.assert_close(recognizer.forward_test(frames, average_clips="score")[0], per_frame.mean(0))
    torch.testing.assert_close(
        recognizer.forward_test(frames, average_clips="prob")[0], per_frame.softmax(1).mean(0)
    )
    with pytest.raises(LfbError, match="2D model"):
        recognizer(torch.zeros(1, 3, 2, 32, 32))


def test_unknown_names_and_weights_are_clear_errors():
    with pytest.raises(LfbError, match="unknown backbone 'resnet9000'.*slowonly_r50"):
        build_recognizer("resnet9000")
    with pytest.raises(LfbError, match="unknown torchvision image model"):
        build_recognizer("torchvision.not_a_model")
    with pytest.raises(LfbError, match="not a torchvision weight of r3d_18"):
        resolve_weights("r3d_18", "S3D_Weights.KINETICS400_V1")
    assert str(resolve_weights("r3d_18", "KINETICS400_V1")) == "R3D_18_Weights.KINETICS400_V1"
    with pytest.raises(LfbError, match="--weights takes torchvision weights"):
        build_recognizer("slowonly_r50", weights="KINETICS400_V1")


def test_weights_without_network_fail_clearly(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))  # an empty cache
    for var in ("https_proxy", "HTTPS_PROXY", "http_proxy", "HTTP_PROXY"):
        monkeypatch.setenv(var, "http://127.0.0.1:9")  # nothing listens: the download is refused at once
    monkeypatch.delenv("no_proxy", raising=False)
    monkeypatch.delenv("NO_PROXY", raising=False)
    with pytest.raises(
        LfbError, match=r"cannot download torchvision weights R3D_18_Weights.KINETICS400_V1 \(no network\?\)"
    ):
        build_recognizer("r3d_18", weights="R3D_18_Weights.KINETICS400_V1")


def test_parse_losses_sums_loss_entries_only():
    losses = {
        "loss_cls": torch.tensor([1.0, 3.0]),  # mean 2
        "loss_aux": [torch.tensor(1.0), torch.tensor([2.0, 4.0])],  # 1 + 3
        "top1_acc": torch.tensor(0.5),  # logged, not summed
    }
    loss, log_vars = parse_losses(losses)
    assert loss.item() == 6.0
    assert log_vars == {"loss_cls": 2.0, "loss_aux": 4.0, "top1_acc": 0.5, "loss": 6.0}
    with pytest.raises(TypeError, match="loss_x is not a tensor or list of tensors"):
        parse_losses({"loss_x": 3.0})
    with pytest.raises(TypeError, match="loss_y"):
        parse_losses({"loss_y": [torch.tensor(1.0), 2.0]})
    with pytest.raises(ValueError, match="no entry whose name contains 'loss'"):
        parse_losses({"acc": torch.tensor(1.0)})


def test_train_and_val_step(slowonly):
    torch.manual_seed(2)
    batch = {
        "imgs": torch.randint(0, 256, (2, 3, 4, 32, 32), dtype=torch.uint8),
        "label": torch.tensor([1, 4]),
    }
    out = slowonly.train_step(batch, optimizer=None)  # eval mode: dropout off, so the loss is reproducible
    with torch.no_grad():
        logits = slowonly(batch["imgs"])
    expected = F.cross_entropy(logits, batch["label"])
    assert out["num_samples"] == 2 and out["loss"].requires_grad
    torch.testing.assert_close(out["loss"].detach(), expected)
    assert out["log_vars"]["loss"] == pytest.approx(expected.item(), rel=1e-6)
    assert out["log_vars"]["top1_acc"] == (logits.argmax(1) == batch["label"]).float().mean().item()
    out["loss"].backward()
    assert slowonly.cls_head.fc_cls.weight.grad is not None
    slowonly.zero_grad(set_to_none=True)
    val = slowonly.val_step(batch)
    assert not val["loss"].requires_grad and val["log_vars"]["loss"] == pytest.approx(
        expected.item(), rel=1e-6
    )


def test_train_step_log_vars_are_averaged_across_ranks(tmp_path):
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")
    }
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env["OMP_NUM_THREADS"] = "1"
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node=2",
        str(ROOT / "tests" / "dist_train_step.py"),
        str(tmp_path),
    ]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    # Fixed losses: rank r gives loss_cls = mean([r + 1, r + 3]) = r + 2, loss_aux = [r, 1] -> r + 1, acc = 10 r.
    expected = {"loss_cls": 2.5, "loss_aux": 1.5, "acc": 5.0, "loss": 4.0}
    for r, result in enumerate(ranks):
        assert result["fixed_log_vars"] == pytest.approx(expected)
        assert result["fixed_local_loss"] == pytest.approx(2 * r + 3)  # the returned loss stays local
    # train_step on each rank's own batch: logged values are the mean of the two local losses.
    local = [result["local_loss"] for result in ranks]
    assert local[0] != pytest.approx(local[1])
    for result in ranks:
        assert result["log_vars"]["loss_cls"] == pytest.approx(sum(local) / 2, rel=1e-6)
        assert result["log_vars"]["loss"] == pytest.approx(sum(local) / 2, rel=1e-6)
        assert result["num_samples"] == 2


def test_mmaction_recognizers_use_kinetics_strides_and_their_heads():
    """MMAction2's Kinetics recognizers keep stride 2 in the last stage (ResNet3d's default), unlike the
    AVA detectors (stride 1 there); SlowFast recognizers pool both pathways, fast first, into fc_cls."""
    slowonly = build_recognizer("slowonly_r50", num_classes=3).recognizer.eval()
    with torch.no_grad():
        assert slowonly.backbone(torch.zeros(1, 3, 2, 64, 64)).shape[-2:] == (2, 2)  # 64 / 32
    slowfast = build_recognizer("slowfast_r50", num_classes=3).recognizer.eval()
    state = slowfast.state_dict()
    assert state["cls_head.fc_cls.weight"].shape == (3, 2048 + 256)
    x = torch.randint(0, 256, (1, 3, 8, 64, 64), dtype=torch.uint8)
    with torch.no_grad():
        slow, fast = slowfast.backbone(slowfast.normalize(x))
        assert slow.shape[-2:] == (2, 2) and fast.shape[-2:] == (2, 2)
        pooled = torch.cat([fast.mean(dim=(2, 3, 4)), slow.mean(dim=(2, 3, 4))], dim=1)
        expected = pooled @ state["cls_head.fc_cls.weight"].T + state["cls_head.fc_cls.bias"]
        torch.testing.assert_close(slowfast(x), expected, rtol=1e-5, atol=1e-5)
        _, embedding = slowfast.forward_with_embeddings(x)
        torch.testing.assert_close(embedding, pooled, rtol=1e-5, atol=1e-6)
