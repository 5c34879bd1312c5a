"""Embedded-Gaussian non-local block with MMCV ``NonLocal3d``'s state_dict layout.

MMAction2's non-local SlowOnly (``non_local_cfg=dict(sub_sample=True, use_scale=True,
norm_cfg=BN3d, mode='embedded_gaussian')``) builds MMCV's block: 1x1x1 convs ``g``, ``theta``,
``phi`` (with bias, no norm) to ``C // 2`` channels, ``conv_out`` (no bias) + BN back to ``C``, and
with ``sub_sample`` a (1, 2, 2) max-pool after ``g`` and ``phi``; MMCV wraps those two in
``nn.Sequential``, so their keys are ``g.0.conv.*`` / ``phi.0.conv.*`` while ``theta.conv.*`` and
``conv_out.conv.*`` / ``conv_out.bn.*`` are not nested.
"""

from __future__ import annotations

from torch import Tensor, nn

from lfbtool.models.conv_module import ConvBN3d

__all__ = ["NonLocal3d"]


def _conv1x1(in_channels: int, out_channels: int) -> ConvBN3d:
    """MMCV ``ConvModule(kernel_size=1, act_cfg=None)`` without norm: conv with bias."""
    return ConvBN3d(in_channels, out_channels, (1, 1, 1), relu=False, norm=False)


class NonLocal3d(nn.Module):
    """``forward(x [N, C, T, H, W]) -> x + BN(conv_out(softmax(theta^T phi / sqrt(C/2)) g))``."""

    def __init__(self, in_channels: int, *, sub_sample: bool = True, use_scale: bool = True) -> None:
        super().__init__()
        self.inter_channels = max(in_channels // 2, 1)
        self.use_scale = use_scale
        inter = self.inter_channels
        self.g: nn.Module = _conv1x1(in_channels, inter)
        self.theta = _conv1x1(in_channels, inter)
        self.phi: nn.Module = _conv1x1(in_channels, inter)
        if sub_sample:  # spatial only, as MMCV's NonLocal3d
            self.g = nn.Sequential(self.g, nn.MaxPool3d(kernel_size=(1, 2, 2)))
            self.phi = nn.Sequential(self.phi, nn.MaxPool3d(kernel_size=(1, 2, 2)))
        self.conv_out = ConvBN3d(inter, in_channels, (1, 1, 1), relu=False)

    def forward(self, x: Tensor) -> Tensor:
        n = x.shape[0]
        g_x = self.g(x).view(n, self.inter_channels, -1).permute(0, 2, 1)
        theta_x = self.theta(x).view(n, self.inter_channels, -1).permute(0, 2, 1)
        phi_x = self.phi(x).view(n, self.inter_channels, -1)
        weight = theta_x @ phi_x
        if self.use_scale:
            weight = weight / theta_x.shape[-1] ** 0.5
        y = weight.softmax(dim=-1) @ g_x
        y = y.permute(0, 2, 1).contiguous().reshape(n, self.inter_channels, *x.shape[2:])
        return x + self.conv_out(y)
