"""LFB head: RoI features -> one C-vector per box, as MMAction2's ``LFBInferHead`` computes them.

MMAction2's head also collects the features and writes the bank from ``__del__``; here the head only
returns them and the caller (extract loop, bank writer) stores them.
"""

from __future__ import annotations

from torch import Tensor, nn

from lfbtool.choices import Pool

__all__ = ["LFBHead"]


def _pool(mode: Pool, size: tuple[int | None, int | None, int | None]) -> nn.Module:
    """The pooling module; ``mode`` was parsed at the edge (``Pool(mode)`` only checks the type)."""
    return nn.AdaptiveAvgPool3d(size) if Pool(mode) is Pool.avg else nn.AdaptiveMaxPool3d(size)


class LFBHead(nn.Module):
    """``forward(roi_features [R, C, T, H, W]) -> [R, C]``: temporal pool, spatial pool, fp16.

    Pools as ``AdaptiveXPool3d((1, None, None))`` then ``AdaptiveXPool3d((None, 1, 1))`` in the
    input precision; the cast to fp16 (``half=True``) comes last, as in MMAction2.
    """

    def __init__(self, temporal_pool: Pool = Pool.avg, spatial_pool: Pool = Pool.max, half: bool = True) -> None:
        super().__init__()
        self.temporal_pool = _pool(temporal_pool, (1, None, None))
        self.spatial_pool = _pool(spatial_pool, (None, 1, 1))
        self.half = half

    def forward(self, roi_features: Tensor) -> Tensor:
        # RoI features come temporally pooled to T=1 already; pooling one step is the identity, skip it.
        if roi_features.shape[2] > 1:
            roi_features = self.temporal_pool(roi_features)
        features = self.spatial_pool(roi_features)
        features = features.reshape(features.shape[0], features.shape[1])
        return features.half() if self.half else features
