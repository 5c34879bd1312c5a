"""Input normalization, the one place it is defined: described as data on a backbone's spec and
applied by one module, for feature extraction and recognition alike."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

__all__ = ["Normalization", "Normalize", "MMACTION_NORMALIZATION", "TORCHVISION_VIDEO_NORMALIZATION"]


@dataclass(frozen=True)
class Normalization:
    """Per-channel (RGB) input normalization.

    ``value_range`` 255: ``(x - mean) / std`` on 0-255 pixels (MMAction2).
    ``value_range`` 1: ``(x / 255 - mean) / std`` (torchvision weights).
    """

    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    value_range: float

    def __post_init__(self) -> None:
        if self.value_range not in (1, 255):
            raise ValueError(f"normalization value_range must be 1 or 255, got {self.value_range}")


MMACTION_NORMALIZATION = Normalization((123.675, 116.28, 103.53), (58.395, 57.12, 57.375), 255.0)
TORCHVISION_VIDEO_NORMALIZATION = Normalization(
    (0.43216, 0.394666, 0.37645), (0.22803, 0.22145, 0.216989), 1.0
)


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
