"""MMCV ``ConvModule`` for 3D: the one conv (+ BN) (+ ReLU) block every MMAction2-layout trunk uses.

The child names ``conv`` and ``bn`` are what MMAction2 checkpoints use; a block without norm has only
``conv`` (SlowFast laterals, non-local ``g``/``theta``/``phi``).
"""

from __future__ import annotations

from torch import Tensor, nn

__all__ = ["ConvBN3d", "Triple"]

Triple = tuple[int, int, int]


class ConvBN3d(nn.Module):
    """Conv3d -> optional BatchNorm3d (eps 1e-5) -> optional ReLU.

    ``bias=None`` is MMCV's ``bias='auto'``: a conv bias only when there is no norm.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: Triple,
        stride: Triple = (1, 1, 1),
        padding: Triple = (0, 0, 0),
        relu: bool = True,
        *,
        norm: bool = True,
        bias: bool | None = None,
    ) -> None:
        super().__init__()
        with_bias = not norm if bias is None else bias
        self.conv = nn.Conv3d(in_channels, out_channels, kernel_size, stride, padding, bias=with_bias)
        self.bn: nn.Module | None = nn.BatchNorm3d(out_channels, eps=1e-5) if norm else None
        self.relu: nn.Module | None = nn.ReLU(inplace=True) if relu else None

    def forward(self, x: Tensor) -> Tensor:
        x = self.conv(x)
        if self.bn is not None:
            x = self.bn(x)
        return self.relu(x) if self.relu is not None else x
