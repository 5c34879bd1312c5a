"""RoI features: pool the clip's feature map over time, then RoIAlign each box.

Mirrors MMAction2 ``SingleRoIExtractor3D(roi_layer_type='RoIAlign', output_size=8,
with_temporal_pool=True)``: temporal mean (or max) with keepdim, then MMCV RoIAlign (avg mode,
``aligned=True``, adaptive sampling), which ``torchvision.ops.roi_align`` matches with these settings.
A two-pathway trunk's tuple of maps is first brought to one shape (nearest interpolation to the
longest T and the first map's H, W), each pooled over time, and concatenated on channels in order
(slow first), so one RoIAlign runs on e.g. 2048 + 256 = 2304 channels.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.ops import roi_align

__all__ = ["RoIFeatureExtractor", "temporal_pool", "pooled_features"]

Pool = Literal["avg", "max"]


def temporal_pool(features: Tensor, mode: Pool) -> Tensor:
    """[N, C, T, H, W] -> [N, C, 1, H, W] by mean or max over T."""
    if mode == "avg":
        return features.mean(dim=2, keepdim=True)
    if mode == "max":
        return features.amax(dim=2, keepdim=True)
    raise ValueError(f"temporal pool must be 'avg' or 'max', got {mode!r}")


def pooled_features(features: Tensor | tuple[Tensor, ...], mode: Pool) -> Tensor:
    """One map [N, C, T, H, W] or a tuple of pathway maps -> [N, sum C, H, W], pooled over time.

    Pathways whose shape differs from ``(max T,) + first map's (H, W)`` are resized to it (nearest),
    as MMAction2 does before pooling; a single map takes exactly the single-map path.
    """
    if isinstance(features, Tensor):
        return temporal_pool(features, mode)[:, :, 0].contiguous()
    size = (max(x.shape[2] for x in features),) + tuple(features[0].shape[3:])
    resized = [x if tuple(x.shape[2:]) == size else F.interpolate(x, size) for x in features]
    pooled = torch.cat([temporal_pool(x, mode) for x in resized], dim=1)
    return pooled[:, :, 0].contiguous()


class RoIFeatureExtractor(nn.Module):
    """``forward(features [N,C,T,H,W] | tuple of them, rois [R,5]) -> [R, C, 1, o, o]``.

    ``rois`` rows are ``(batch_index, x1, y1, x2, y2)`` in input pixels; ``spatial_scale`` maps them
    to the feature map (1 / backbone stride).
    """

    def __init__(
        self,
        output_size: int = 8,
        spatial_scale: float = 1 / 16,
        sampling_ratio: int = 0,
        aligned: bool = True,
        temporal_pool: Pool = "avg",
    ) -> None:
        super().__init__()
        if temporal_pool not in ("avg", "max"):
            raise ValueError(f"temporal_pool must be 'avg' or 'max', got {temporal_pool!r}")
        self.output_size = output_size
        self.spatial_scale = spatial_scale
        self.sampling_ratio = sampling_ratio
        self.aligned = aligned
        self.temporal_pool = temporal_pool

    def forward(self, features: Tensor | tuple[Tensor, ...], rois: Tensor) -> Tensor:
        pooled = pooled_features(features, self.temporal_pool)
        _check_rois(rois, pooled.shape[0])
        boxes = rois.to(device=pooled.device, dtype=pooled.dtype)
        out = roi_align(
            pooled,
            boxes,
            output_size=(self.output_size, self.output_size),
            spatial_scale=self.spatial_scale,
            sampling_ratio=self.sampling_ratio,
            aligned=self.aligned,
        )
        return out.unsqueeze(2)

    def extra_repr(self) -> str:
        return (
            f"output_size={self.output_size}, spatial_scale={self.spatial_scale}, "
            f"sampling_ratio={self.sampling_ratio}, aligned={self.aligned}, temporal_pool={self.temporal_pool}"
        )


def _check_rois(rois: Tensor, batch: int) -> None:
    """Boxes must be [R, 5] with batch indices inside the clip batch."""
    if rois.ndim != 2 or rois.shape[1] != 5:
        raise ValueError(f"rois must be [R, 5] (batch index, x1, y1, x2, y2), got {tuple(rois.shape)}")
    if rois.numel() and (rois[:, 0].min() < 0 or rois[:, 0].max() >= batch):
        raise ValueError(f"roi batch indices must lie in [0, {batch}), got {rois[:, 0].tolist()}")
