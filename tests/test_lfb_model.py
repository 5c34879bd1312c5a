"""RoI extraction, LFB head and the whole LFBFeatureModel against hand-computed values."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torchvision
from torch import nn

from lfbtool.models import (
    BackboneSpec,
    LFBFeatureModel,
    LFBHead,
    Normalization,
    RoIFeatureExtractor,
    create_backbone,
)
from tests.reference import slowonly_r50_reference

A, B, C0 = 0.75, -0.5, 10.0  # feature map f(y, x) = A*x + B*y + C0 (bilinear sampling is exact on it)


def _linear_map(weights_t: list[float], size: int = 8) -> torch.Tensor:
    """[1, 2, T, size, size]: channel 0 is f * w_t, channel 1 is 2 f * w_t."""
    y, x = torch.meshgrid(
        torch.arange(size, dtype=torch.float64), torch.arange(size, dtype=torch.float64), indexing="ij"
    )
    f = A * x + B * y + C0
    frames = torch.stack([f * w for w in weights_t])  # [T, H, W]
    return torch.stack([frames, 2 * frames])[None].float()


def _hand_roi_align(
    box: tuple[float, float, float, float], scale: float, out: int, factor: float
) -> np.ndarray:
    """MMCV RoIAlign (aligned=True) on a linear map: each bin averages to f at the bin centre."""
    x1, y1, x2, y2 = (c * scale - 0.5 for c in box)
    bin_w, bin_h = (x2 - x1) / out, (y2 - y1) / out
    grid = np.zeros((out, out))
    for i in range(out):
        for j in range(out):
            cy, cx = y1 + (i + 0.5) * bin_h, x1 + (j + 0.5) * bin_w
            grid[i, j] = (A * cx + B * cy + C0) * factor
    return grid


@pytest.mark.parametrize(("mode", "factor"), [("avg", 2.0), ("max", 3.0)])
def test_roi_align_matches_hand_computation(mode: str, factor: float) -> None:
    features = _linear_map([1.0, 2.0, 3.0])  # temporal mean 2, max 3
    box = (16.0, 32.0, 96.0, 80.0)  # input pixels; on the 1/16 map: x 0.5..5.5, y 1.5..4.5
    extractor = RoIFeatureExtractor(output_size=2, spatial_scale=1 / 16, temporal_pool=mode)
    out = extractor(features, torch.tensor([[0.0, *box]]))
    assert out.shape == (1, 2, 1, 2, 2)
    expected = _hand_roi_align(box, 1 / 16, 2, factor)
    np.testing.assert_allclose(out[0, 0, 0].numpy(), expected, rtol=1e-5)
    np.testing.assert_allclose(out[0, 1, 0].numpy(), 2 * expected, rtol=1e-5)


def test_roi_batch_index_selects_clip() -> None:
    features = torch.cat([_linear_map([1.0]), 5 * _linear_map([1.0])])
    extractor = RoIFeatureExtractor(output_size=1, spatial_scale=1.0)
    out = extractor(features, torch.tensor([[1.0, 2.0, 2.0, 4.0, 6.0], [0.0, 2.0, 2.0, 4.0, 6.0]]))
    centre = A * 2.5 + B * 3.5 + C0  # (x1+x2)/2 - 0.5, (y1+y2)/2 - 0.5
    np.testing.assert_allclose(out[:, 0, 0, 0, 0].numpy(), [5 * centre, centre], rtol=1e-6)
    with pytest.raises(ValueError, match="batch indices"):
        extractor(features, torch.tensor([[2.0, 0, 0, 1, 1]]))


@pytest.mark.parametrize("temporal", ["avg", "max"])
@pytest.mark.parametrize("spatial", ["avg", "max"])
def test_head_pools_like_lfb_infer_head(temporal: str, spatial: str) -> None:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 5, 2, 4, 4)).astype(np.float32)
    over_t = x.mean(axis=2) if temporal == "avg" else x.max(axis=2)
    flat = over_t.reshape(3, 5, -1)
    expected = flat.mean(axis=-1) if spatial == "avg" else flat.max(axis=-1)
    full = LFBHead(temporal_pool=temporal, spatial_pool=spatial, half=False)(torch.from_numpy(x))
    assert full.shape == (3, 5) and full.dtype == torch.float32
    np.testing.assert_allclose(full.numpy(), expected, rtol=1e-6, atol=1e-6)
    half = LFBHead(temporal_pool=temporal, spatial_pool=spatial, half=True)(torch.from_numpy(x))
    assert half.dtype == torch.float16
    assert torch.equal(half, full.half())


class _Recorder(nn.Module):
    """Identity backbone with stride 1 that remembers its input."""

    def __init__(self, norm: Normalization) -> None:
        super().__init__()
        self.spec = BackboneSpec("recorder", 3, 1, norm, "test")
        self.seen: torch.Tensor | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen = x
        return x


@pytest.mark.parametrize("value_range", [255, 1])
def test_normalization_exact(value_range: int) -> None:
    mean, std = (123.675, 116.28, 103.53), (58.395, 57.12, 57.375)
    if value_range == 1:
        mean, std = (0.43216, 0.394666, 0.37645), (0.22803, 0.22145, 0.216989)
    backbone = _Recorder(Normalization(mean, std, value_range))
    model = LFBFeatureModel(backbone, roi_output_size=1, half=False)
    clips = torch.randint(0, 256, (2, 3, 2, 4, 4), dtype=torch.uint8)
    model(clips, torch.tensor([[0.0, 0, 0, 4, 4]]))
    x = clips.numpy().astype(np.float32)
    if value_range == 1:
        x = x / np.float32(255)
    m = np.array(mean, dtype=np.float32).reshape(1, 3, 1, 1, 1)
    s = np.array(std, dtype=np.float32).reshape(1, 3, 1, 1, 1)
    assert backbone.seen.dtype == torch.float32
    assert np.array_equal(backbone.seen.numpy(), (x - m) / s)
    model(clips.float(), torch.tensor([[0.0, 0, 0, 4, 4]]))  # float 0-255 input gives the same
    assert np.array_equal(backbone.seen.numpy(), (x - m) / s)


def test_model_stays_in_eval_mode() -> None:
    model = LFBFeatureModel(_Recorder(Normalization((0, 0, 0), (1, 1, 1), 255)))
    model.train()
    assert not model.training and not model.backbone.training
    assert list(model.state_dict()) == []  # mean/std are not persistent


def test_slowonly_feature_model_end_to_end() -> None:
    torch.manual_seed(0)
    backbone = create_backbone("slowonly_r50")
    with torch.no_grad():
        for module in backbone.modules():
            if isinstance(module, nn.BatchNorm3d):
                module.running_var.uniform_(0.5, 2.0)
    model = LFBFeatureModel(backbone)
    clips = torch.randint(0, 256, (2, 3, 4, 48, 48), dtype=torch.uint8)
    rois = torch.tensor(
        [[0.0, 4.0, 8.0, 40.0, 44.0], [1.0, 0.0, 0.0, 48.0, 48.0], [1.0, 10.0, 20.0, 30.0, 40.0]]
    )
    with torch.inference_mode():
        out = model(clips, rois)
        # by hand: MMAction2 normalization, functional backbone, temporal mean, RoIAlign 8x8, max over space
        mean = torch.tensor([123.675, 116.28, 103.53]).view(1, 3, 1, 1, 1)
        std = torch.tensor([58.395, 57.12, 57.375]).view(1, 3, 1, 1, 1)
        state = {k: v.clone() for k, v in backbone.state_dict().items()}
        feats = slowonly_r50_reference(state, (clips.float() - mean) / std).mean(dim=2)
        rois_aligned = torchvision.ops.roi_align(feats, rois, (8, 8), 1 / 16, 0, True)
        expected = rois_aligned.amax(dim=(2, 3)).half()
    assert out.shape == (3, 2048) and out.dtype == torch.float16
    assert torch.equal(out, expected)
    assert not torch.equal(out[1], out[2])
