"""RoI features of two-pathway trunks (MMAction2 SingleRoIExtractor3D on a tuple) and the whole
LFBFeatureModel on SlowFast, against plain torch: interpolate + mean + roi_align + amax."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torchvision.ops import roi_align

from lfbtool.models import LFBFeatureModel, RoIFeatureExtractor, create_backbone, load_backbone_weights
from lfbtool.testing.checkpoints import random_backbone_state
from tests.reference import slowfast_r50_reference

ROIS = torch.tensor([[0.0, 4.0, 8.0, 40.0, 44.0], [1.0, 0.0, 0.0, 64.0, 64.0], [1.0, 10.0, 20.0, 30.0, 40.0]])


def _expected(maps: list[torch.Tensor], rois: torch.Tensor, mode: str, scale: float) -> torch.Tensor:
    size = (max(m.shape[2] for m in maps), *maps[0].shape[3:])
    resized = [F.interpolate(m, size=size, mode="nearest") for m in maps]
    pooled = [m.mean(dim=2) if mode == "avg" else m.max(dim=2).values for m in resized]
    return roi_align(torch.cat(pooled, dim=1), rois, (8, 8), scale, 0, True)


@pytest.mark.parametrize("mode", ["avg", "max"])
def test_tuple_is_resized_pooled_concatenated_slow_first(mode: str) -> None:
    torch.manual_seed(0)
    slow = torch.randn(2, 6, 2, 4, 4)
    fast = torch.randn(2, 3, 8, 8, 8)  # other H, W: nearest-resized to the slow map's 4 x 4
    out = RoIFeatureExtractor(spatial_scale=1 / 16, temporal_pool=mode)((slow, fast), ROIS)
    expected = _expected([slow, fast], ROIS, mode, 1 / 16)
    assert out.shape == (3, 9, 1, 8, 8)
    assert torch.equal(out[:, :, 0], expected)
    only_slow = roi_align(slow.mean(2) if mode == "avg" else slow.amax(2), ROIS, (8, 8), 1 / 16, 0, True)
    assert torch.equal(out[:, :6, 0], only_slow)  # slow channels first, untouched by the resize


def test_single_map_path_unchanged() -> None:
    torch.manual_seed(1)
    feats = torch.randn(2, 5, 3, 4, 4)
    out = RoIFeatureExtractor()(feats, ROIS)
    assert torch.equal(out[:, :, 0], roi_align(feats.mean(2), ROIS, (8, 8), 1 / 16, 0, True))


@pytest.mark.parametrize(("name", "rate", "kernel", "frames"), [("slowfast_r50", 8, 5, 8), ("slowfast_r50_8x8", 4, 7, 8)])
def test_slowfast_feature_model_equals_reference(name: str, rate: int, kernel: int, frames: int) -> None:
    torch.set_num_threads(1)
    state = random_backbone_state(name, seed=2, calibration_shape=(2, 3, frames, 32, 32))
    backbone = create_backbone(name)
    load_backbone_weights(backbone, state, source="random")
    model = LFBFeatureModel(backbone)
    clips = torch.randint(0, 256, (2, 3, frames, 64, 64), dtype=torch.uint8)
    mean = torch.tensor([123.675, 116.28, 103.53]).view(1, 3, 1, 1, 1)
    std = torch.tensor([58.395, 57.12, 57.375]).view(1, 3, 1, 1, 1)
    with torch.inference_mode():
        out = model(clips, ROIS)
        maps = slowfast_r50_reference(state, (clips.float() - mean) / std, rate=rate, speed=rate, fusion_kernel=kernel)
        expected = _expected(list(maps), ROIS, "avg", 1 / 16).amax(dim=(2, 3)).half()
    assert out.shape == (3, 2304) and out.dtype == torch.float16
    assert torch.equal(out, expected)
    assert out[:, 2048:].float().abs().sum() > 0 and not torch.equal(out[1], out[2])
