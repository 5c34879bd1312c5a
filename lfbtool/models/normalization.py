"""Input normalization, applied by one module for feature extraction and recognition alike; described
as data (:class:`~lfbtool.models.specs.Normalization`, torch-free) on a backbone's spec."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from lfbtool.models.specs import MMACTION_NORMALIZATION, TORCHVISION_VIDEO_NORMALIZATION, Normalization

__all__ = ["Normalization", "Normalize", "MMACTION_NORMALIZATION", "TORCHVISION_VIDEO_NORMALIZATION"]


class Normalize(nn.Module):
    """Raw pixels (uint8 or float on 0-255, channels on dim 1) -> the model's float32 input.

    Buffers are not persistent, so checkpoints load strictly without them.
    """

    mean: Tensor
    std: Tensor

    def __init__(self, normalization: Normalization, ndim: int = 5) -> None:
        super().__init__()
        shape = (1, 3) + (1,) * (ndim - 2)
        self.scale_to_unit = normalization.value_range == 1
        self.register_buffer("mean", torch.tensor(normalization.mean, dtype=torch.float32).view(shape), False)
        self.register_buffer("std", torch.tensor(normalization.std, dtype=torch.float32).view(shape), False)

    def forward(self, x: Tensor) -> Tensor:
        x = x.to(dtype=torch.float32)
        if self.scale_to_unit:
            x = x / 255
        return (x - self.mean) / self.std
