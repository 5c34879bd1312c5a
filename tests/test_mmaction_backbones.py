"""SlowFast R50 (4x16, 8x8), non-local SlowOnly R50 and SlowOnly R101 against independent references:
MMAction2 key names and shapes derived in tests/reference.py, strict loading, functional forwards."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from lfbtool.errors import LfbError
from lfbtool.models import backbone_spec, create_backbone, load_backbone_weights
from lfbtool.models.heads import SlowFastHead
from lfbtool.testing.checkpoints import random_backbone_state
from tests.reference import (
    NL_R50,
    slowfast_r50_expected_shapes,
    slowfast_r50_reference,
    slowonly_expected_shapes,
    slowonly_reference,
)

CASES = {
    # name: (expected shapes, functional forward, input shape)
    "slowonly_r50_nl": (lambda: slowonly_expected_shapes(non_local=NL_R50),
                        lambda sd, x: slowonly_reference(sd, x, non_local=NL_R50), (1, 3, 4, 64, 64)),
    "slowonly_r101": (lambda: slowonly_expected_shapes(101),
                      lambda sd, x: slowonly_reference(sd, x, depth=101), (1, 3, 4, 32, 32)),
    "slowfast_r50": (lambda: slowfast_r50_expected_shapes(5),
                     lambda sd, x: slowfast_r50_reference(sd, x, rate=8, speed=8, fusion_kernel=5), (1, 3, 16, 32, 32)),
    "slowfast_r50_8x8": (lambda: slowfast_r50_expected_shapes(7),
                         lambda sd, x: slowfast_r50_reference(sd, x, rate=4, speed=4, fusion_kernel=7), (1, 3, 8, 32, 32)),
}


@pytest.fixture(scope="module", params=sorted(CASES))
def calibrated(request) -> tuple[str, torch.nn.Module, dict[str, torch.Tensor]]:
    """A backbone and its BN-calibrated random state, loaded through the strict loader."""
    torch.set_num_threads(1)
    name = request.param
    frames = CASES[name][2][2]
    state = random_backbone_state(name, seed=1, calibration_shape=(2, 3, frames, 32, 32))
    model = create_backbone(name)
    load_backbone_weights(model, {f"backbone.{k}": v for k, v in state.items()}, source="calibrated.pth")
    return name, model, state


def test_state_dict_keys_and_shapes_are_mmaction2s(calibrated) -> None:
    name, model, _ = calibrated
    actual = {key: tuple(value.shape) for key, value in model.state_dict().items()}
    assert actual == CASES[name][0]()


def test_spot_keys_from_mmaction2_checkpoints() -> None:
    nl = slowonly_expected_shapes(non_local=NL_R50)
    assert nl["layer2.0.non_local_block.g.0.conv.weight"] == (256, 512, 1, 1, 1)
    assert nl["layer2.0.non_local_block.theta.conv.bias"] == (256,)
    assert nl["layer3.4.non_local_block.conv_out.bn.running_var"] == (1024,)
    assert "layer2.1.non_local_block.g.0.conv.weight" not in nl
    sf5, sf7 = slowfast_r50_expected_shapes(5), slowfast_r50_expected_shapes(7)
    assert sf5["slow_path.conv1_lateral.conv.weight"] == (16, 8, 5, 1, 1)
    assert sf7["slow_path.conv1_lateral.conv.weight"] == (16, 8, 7, 1, 1)
    assert sf5["slow_path.layer1.0.conv1.conv.weight"] == (64, 80, 1, 1, 1)
    assert sf5["slow_path.layer4.0.downsample.conv.weight"] == (2048, 1280, 1, 1, 1)
    assert sf5["fast_path.conv1.conv.weight"] == (8, 3, 5, 7, 7)
    assert sf5["fast_path.layer4.2.conv3.conv.weight"] == (256, 64, 1, 1, 1)
    assert len(slowonly_expected_shapes(101)) > len(slowonly_expected_shapes(50))


def test_forward_equals_functional_reference(calibrated) -> None:
    name, model, state = calibrated
    torch.manual_seed(2)
    x = torch.randn(*CASES[name][2])
    with torch.inference_mode():
        ours = model(x)
        ref = CASES[name][1](state, x)
    ours, ref = (ours, ref) if isinstance(ours, tuple) else ((ours,), (ref,))
    spec = backbone_spec(name)
    assert [o.shape[1] for o in ours] == list(spec.pathway_channels or (spec.channels,))
    for got, want in zip(ours, ref, strict=True):
        assert torch.isfinite(want).all() and want.std() > 0.1
        torch.testing.assert_close(got, want, rtol=0, atol=1e-5)
    if spec.pathway_channels:  # slow T = T / resample_rate, fast T = T / (resample_rate / speed_ratio)
        frames = x.shape[2]
        assert ours[0].shape[2:] == (frames // spec.temporal_stride, 2, 2) and ours[1].shape[2] == frames


@pytest.mark.parametrize("name", sorted(CASES))
def test_strict_loading_lists_problems(name: str) -> None:
    model = create_backbone(name)
    shapes = CASES[name][0]()
    good = {f"backbone.{k}": torch.zeros(s) for k, s in shapes.items()}
    load_backbone_weights(model, good, source="good.pth")  # exactly the independent layout loads
    bad = dict(good)
    dropped = sorted(shapes)[len(shapes) // 2]
    del bad[f"backbone.{dropped}"]
    bad["backbone.extra.weight"] = torch.zeros(1)
    widened = next(k for k, s in shapes.items() if len(s) == 5)
    bad[f"backbone.{widened}"] = torch.zeros(shapes[widened][0] + 1, *shapes[widened][1:])
    with pytest.raises(LfbError) as error:
        load_backbone_weights(model, bad, source="bad.pth")
    text = str(error.value)
    assert text.startswith(f"bad.pth: checkpoint does not fit {name}")
    assert f"missing keys [{dropped}]" in text and "unexpected keys [extra.weight]" in text
    assert f"{widened}: checkpoint" in text


def test_slowfast_variants_refuse_each_others_laterals() -> None:
    state = {f"backbone.{k}": torch.zeros(s) for k, s in slowfast_r50_expected_shapes(5).items()}
    with pytest.raises(LfbError, match=r"slowfast_r50_8x8.*conv1_lateral.conv.weight: checkpoint \(16, 8, 5, 1, 1\)"):
        load_backbone_weights(create_backbone("slowfast_r50_8x8"), state, source="4x16.pth")


def test_slowfast_refuses_clip_not_multiple_of_resample_rate() -> None:
    with pytest.raises(LfbError, match="multiple of 8, got 12 frames"):
        create_backbone("slowfast_r50")(torch.zeros(1, 3, 12, 32, 32))


def test_specs() -> None:
    sf, sf8 = backbone_spec("slowfast_r50"), backbone_spec("slowfast_r50_8x8")
    assert sf.channels == sf8.channels == 2304 and sf.pathway_channels == (2048, 256) and sf.stride == 16
    assert (sf.extract_clip.clip_len, sf.extract_clip.frame_interval) == (32, 2)
    assert (sf.test_clip.clip_len, sf.test_clip.frame_interval, sf.test_clip.num_clips) == (32, 2, 10)
    assert sf.min_frames == 8 and sf8.min_frames == 4
    r101 = backbone_spec("slowonly_r101")
    assert (r101.extract_clip.clip_len, r101.extract_clip.frame_interval) == (8, 8) and r101.channels == 2048
    assert "slowonly_kinetics400-pretrained-r101_8xb16-8x8x1-20e_ava21-rgb" in r101.mmaction_configs
    assert "slowfast_kinetics400-pretrained-r50_8xb8-8x8x1-20e_ava21-rgb" in sf8.mmaction_configs
    assert backbone_spec("slowonly_r50_nl").normalization == backbone_spec("slowonly_r50").normalization


def test_slowfast_head_equals_plain_torch() -> None:
    torch.manual_seed(4)
    head = SlowFastHead(num_classes=5, in_channels=12, dropout_ratio=0.5).eval()
    slow, fast = torch.randn(2, 8, 2, 3, 3), torch.randn(2, 4, 8, 3, 3)
    with torch.inference_mode():
        out = head((slow, fast))
        pooled = torch.cat([fast.mean(dim=(2, 3, 4)), slow.mean(dim=(2, 3, 4))], dim=1)  # fast first
        expected = F.linear(pooled, head.fc_cls.weight, head.fc_cls.bias)
    torch.testing.assert_close(out, expected, rtol=1e-6, atol=1e-6)
    assert set(head.state_dict()) == {"fc_cls.weight", "fc_cls.bias"}
