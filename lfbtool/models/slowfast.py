"""SlowFast R50 with MMAction2's state_dict layout (``slow_path.*``, ``fast_path.*``) and its head.

Mirrors MMAction2 ``ResNet3dSlowFast(resample_rate, speed_ratio, channel_ratio=8)`` as the AVA
detectors build it: the slow pathway is SlowOnly R50 (``lateral=True``, ``inflate=(0, 0, 1, 1)``,
``spatial_strides=(1, 2, 2, 1)``) whose stages take the fast features in through laterals
``conv1_lateral`` and ``layer{1,2,3}_lateral`` (conv only, kernel ``(fusion_kernel, 1, 1)``,
temporal stride ``speed_ratio``, no bias, no norm); the fast pathway is a ResNet3d R50 with
``base_channels=8``, conv1 kernel (5, 7, 7), every stage inflated, no laterals. The two model-zoo
variants differ in rates and in the lateral kernel: 4x16 (rates 8, ``fusion_kernel`` 5, the
default) and 8x8 (rates 4, ``fusion_kernel=7`` in its configs).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lfbtool.errors import SettingError
from lfbtool.models.conv_module import ConvBN3d
from lfbtool.models.registry import register_backbone
from lfbtool.models.resnet3d import Bottleneck3d, ResNet3d, init_weights
from lfbtool.models.specs import AVA_STRIDES, SLOWFAST_R50_8X8_SPEC, SLOWFAST_R50_SPEC, BackboneSpec

__all__ = ["SlowPathway", "ResNet3dSlowFast", "slowfast_r50", "slowfast_r50_8x8"]

LATERAL_INFL = 2  # MMAction2 ``lateral_infl``: a lateral doubles the fast channels it carries


class SlowPathway(ResNet3d):
    """SlowOnly R50 widened by the laterals' channels, with the lateral convs as its own children."""

    def __init__(self, *, fast_channels: int, speed_ratio: int, fusion_kernel: int,
                 spatial_strides: tuple[int, ...] = AVA_STRIDES) -> None:
        fast_widths = [fast_channels] + [fast_channels * 2**i * Bottleneck3d.expansion for i in range(3)]
        super().__init__(50, spatial_strides=spatial_strides, lateral_inplanes=[w * LATERAL_INFL for w in fast_widths])
        names = ["conv1_lateral", "layer1_lateral", "layer2_lateral", "layer3_lateral"]
        self.lateral_connections = names[1:]
        for name, width in zip(names, fast_widths, strict=True):
            lateral = ConvBN3d(
                width, width * LATERAL_INFL, (fusion_kernel, 1, 1), stride=(speed_ratio, 1, 1),
                padding=((fusion_kernel - 1) // 2, 0, 0), relu=False, norm=False, bias=False,
            )
            self.add_module(name, lateral)
        init_weights(self)


class ResNet3dSlowFast(nn.Module):
    """``forward(x [N,3,T,H,W]) -> (slow [N,2048,T/r,H/16,W/16], fast [N,256,T*s/r,H/16,W/16])``.

    The slow pathway sees every ``resample_rate``-th frame from frame 0, the fast one every
    ``resample_rate // speed_ratio``-th (nearest interpolation, as MMAction2); T must be a multiple of
    ``resample_rate`` so that the laterals' time steps meet the slow ones.
    """

    spec: BackboneSpec

    def __init__(self, *, resample_rate: int = 8, speed_ratio: int = 8, channel_ratio: int = 8,
                 fusion_kernel: int = 5, spatial_strides: tuple[int, ...] = AVA_STRIDES) -> None:
        super().__init__()
        self.resample_rate = resample_rate
        self.speed_ratio = speed_ratio
        fast_base = 64 // channel_ratio
        self.slow_path = SlowPathway(fast_channels=fast_base, speed_ratio=speed_ratio, fusion_kernel=fusion_kernel,
                                     spatial_strides=spatial_strides)
        self.fast_path = ResNet3d(50, base_channels=fast_base, conv1_kernel=(5, 7, 7), inflate=(True,) * 4,
                                  spatial_strides=spatial_strides)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        frames = x.shape[2]
        if frames < self.resample_rate or frames % self.resample_rate:
            raise SettingError(
                "clip_len", f"must be a multiple of {self.resample_rate}, got {frames} frames (SlowFast's "
                f"resample_rate is {self.resample_rate})"
            )
        slow = F.interpolate(x, mode="nearest", scale_factor=(1.0 / self.resample_rate, 1.0, 1.0))
        slow = self.slow_path.maxpool(self.slow_path.conv1(slow))
        fast_step = self.resample_rate // self.speed_ratio
        fast = F.interpolate(x, mode="nearest", scale_factor=(1.0 / fast_step, 1.0, 1.0))
        fast = self.fast_path.maxpool(self.fast_path.conv1(fast))
        slow = torch.cat((slow, self.slow_path.conv1_lateral(fast)), dim=1)
        for index, name in enumerate(self.slow_path.res_layers):
            slow = getattr(self.slow_path, name)(slow)
            fast = getattr(self.fast_path, name)(fast)
            if index < len(self.slow_path.lateral_connections):  # no fusion after the last stage
                lateral = getattr(self.slow_path, self.slow_path.lateral_connections[index])
                slow = torch.cat((slow, lateral(fast)), dim=1)
        return slow, fast


@register_backbone(SLOWFAST_R50_SPEC)
def slowfast_r50(*, spatial_strides: tuple[int, ...] = AVA_STRIDES) -> ResNet3dSlowFast:
    """SlowFast R50 4x16 with random weights."""
    return ResNet3dSlowFast(resample_rate=8, speed_ratio=8, fusion_kernel=5, spatial_strides=spatial_strides)


@register_backbone(SLOWFAST_R50_8X8_SPEC)
def slowfast_r50_8x8(*, spatial_strides: tuple[int, ...] = AVA_STRIDES) -> ResNet3dSlowFast:
    """SlowFast R50 8x8 with random weights."""
    return ResNet3dSlowFast(resample_rate=4, speed_ratio=4, fusion_kernel=7, spatial_strides=spatial_strides)
