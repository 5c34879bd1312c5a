"""MMAction2's ResNet3d family (SlowOnly R50 / R101, non-local SlowOnly) with MMAction2's state_dict layout.

One trunk, :class:`ResNet3d`, mirrors MMAction2 ``ResNet3d``/``ResNet3dPathway`` with 'pytorch'-style
bottlenecks, ``inflate_style='3x1x1'``, no pool2, so that ``backbone.*`` keys of MMAction2 checkpoints
load unchanged: every conv sits in a ``ConvModule``-like block with children ``conv`` and ``bn``.
SlowOnly is ``ResNet3dSlowOnly(conv1_kernel=(1, 7, 7), conv1_stride_t=1, pool1_stride_t=1,
inflate=(0, 0, 1, 1), spatial_strides=(1, 2, 2, 1))`` (the AVA detectors' strides, output stride 16);
the SlowFast pathways (``slowfast.py``) are the same trunk with other widths, kernels and laterals.
Written in the style of torchvision's ``torchvision/models/video/resnet.py``: plain modules, explicit builders.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from lfbtool.models.conv_module import ConvBN3d, Triple
from lfbtool.models.nonlocal3d import NonLocal3d
from lfbtool.models.registry import register_backbone
from lfbtool.models.specs import (
    AVA_STRIDES,
    SLOWONLY_R50_NL_SPEC,
    SLOWONLY_R50_SPEC,
    SLOWONLY_R101_SPEC,
    BackboneSpec,
)

__all__ = ["ConvBN3d", "Bottleneck3d", "ResNet3d", "STAGE_BLOCKS", "NON_LOCAL_R50",
           "slowonly_r50", "slowonly_r50_nl", "slowonly_r101"]

#: Bottlenecks per stage by depth (MMAction2 ``ResNet3d.arch_settings``).
STAGE_BLOCKS: dict[int, tuple[int, int, int, int]] = {50: (3, 4, 6, 3), 101: (3, 4, 23, 3)}
#: Blocks that end in a non-local block in MMAction2's non-local SlowOnly R50 configs.
NON_LOCAL_R50 = ((0, 0, 0), (1, 0, 1, 0), (1, 0, 1, 0, 1, 0), (0, 0, 0))



class Bottleneck3d(nn.Module):
    """ResNet bottleneck, 'pytorch' style: the spatial stride sits on conv2 (the 3x3).

    Inflated blocks use a (3, 1, 1) temporal kernel in conv1. conv3 has no ReLU; the ReLU comes after
    the residual add, and the optional non-local block after that ReLU (MMAction2's order).
    """

    expansion = 4

    def __init__(
        self,
        inplanes: int,
        planes: int,
        spatial_stride: int = 1,
        inflate: bool = False,
        downsample: nn.Module | None = None,
        non_local: bool = False,
    ) -> None:
        super().__init__()
        if inflate:
            conv1_kernel, conv1_padding = (3, 1, 1), (1, 0, 0)
        else:
            conv1_kernel, conv1_padding = (1, 1, 1), (0, 0, 0)
        self.conv1 = ConvBN3d(inplanes, planes, conv1_kernel, padding=conv1_padding)
        self.conv2 = ConvBN3d(
            planes, planes, (1, 3, 3), stride=(1, spatial_stride, spatial_stride), padding=(0, 1, 1)
        )
        self.conv3 = ConvBN3d(planes, planes * self.expansion, (1, 1, 1), relu=False)
        self.downsample = downsample
        self.relu = nn.ReLU(inplace=True)
        self.non_local_block = NonLocal3d(planes * self.expansion) if non_local else None

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.conv3(self.conv2(self.conv1(x))) + identity)
        return out if self.non_local_block is None else self.non_local_block(out)


def make_res_layer(
    inplanes: int, planes: int, blocks: int, *, spatial_stride: int, inflate: bool,
    non_local: Sequence[int] | None = None,
) -> nn.Sequential:
    """One stage; block 0 carries the stride and a 1x1x1 conv + BN shortcut when shapes change."""
    out_channels = planes * Bottleneck3d.expansion
    flags = [bool(f) for f in non_local] if non_local is not None else [False] * blocks
    if len(flags) != blocks:
        raise ValueError(f"non_local needs one flag per block ({blocks}), got {len(flags)}")
    downsample = None
    if spatial_stride != 1 or inplanes != out_channels:
        downsample = ConvBN3d(
            inplanes, out_channels, (1, 1, 1), stride=(1, spatial_stride, spatial_stride), relu=False
        )
    layers = [Bottleneck3d(inplanes, planes, spatial_stride, inflate, downsample, flags[0])]
    layers += [Bottleneck3d(out_channels, planes, 1, inflate, non_local=flags[i]) for i in range(1, blocks)]
    return nn.Sequential(*layers)


class ResNet3d(nn.Module):
    """Stem (conv ``conv1_kernel``/(1,2,2) + maxpool (1,3,3)/(1,2,2)) and four bottleneck stages.

    ``lateral_inplanes`` widens each stage's input by the channels a SlowFast lateral concatenates
    (zero for SlowOnly); ``non_local`` gives per-stage per-block flags.
    """

    spec: BackboneSpec

    def __init__(
        self,
        depth: int = 50,
        *,
        base_channels: int = 64,
        conv1_kernel: Triple = (1, 7, 7),
        spatial_strides: Sequence[int] = AVA_STRIDES,
        inflate: Sequence[bool] = (False, False, True, True),
        non_local: Sequence[Sequence[int]] | None = None,
        lateral_inplanes: Sequence[int] = (0, 0, 0, 0),
    ) -> None:
        super().__init__()
        if depth not in STAGE_BLOCKS:
            raise ValueError(f"depth must be one of {sorted(STAGE_BLOCKS)}, got {depth}")
        padding = tuple((k - 1) // 2 for k in conv1_kernel)
        self.conv1 = ConvBN3d(3, base_channels, conv1_kernel, stride=(1, 2, 2), padding=padding)
        self.maxpool = nn.MaxPool3d(kernel_size=(1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1))
        inplanes = base_channels
        for index, blocks in enumerate(STAGE_BLOCKS[depth]):
            planes = base_channels * 2**index
            layer = make_res_layer(
                inplanes + lateral_inplanes[index], planes, blocks, spatial_stride=spatial_strides[index],
                inflate=bool(inflate[index]), non_local=None if non_local is None else non_local[index],
            )
            self.add_module(f"layer{index + 1}", layer)
            inplanes = planes * Bottleneck3d.expansion
        self.out_channels = inplanes
        self.res_layers = [f"layer{i + 1}" for i in range(len(STAGE_BLOCKS[depth]))]
        init_weights(self)

    def forward(self, x: Tensor) -> Tensor:
        """``x`` normalized float [N, 3, T, H, W] -> features [N, 2048, T, H/16, W/16]."""
        x = self.maxpool(self.conv1(x))
        for name in self.res_layers:
            x = getattr(self, name)(x)
        return x


def init_weights(model: nn.Module) -> None:
    """MMAction2's from-scratch init (kaiming convs, zero conv bias, unit BN; no zero-init of residual
    or non-local BNs, so random-weight trunks exercise every branch). Real weights come from checkpoints."""
    for module in model.modules():
        if isinstance(module, nn.Conv3d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.BatchNorm3d):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)


@register_backbone(SLOWONLY_R50_SPEC)
def slowonly_r50(*, spatial_strides: Sequence[int] = AVA_STRIDES) -> ResNet3d:
    """SlowOnly R50 with random weights; load an MMAction2 checkpoint with load_backbone_weights."""
    return ResNet3d(50, spatial_strides=spatial_strides)


@register_backbone(SLOWONLY_R50_NL_SPEC)
def slowonly_r50_nl(*, spatial_strides: Sequence[int] = AVA_STRIDES) -> ResNet3d:
    """SlowOnly R50 with non-local blocks (sub_sample, use_scale, BN in conv_out)."""
    return ResNet3d(50, non_local=NON_LOCAL_R50, spatial_strides=spatial_strides)


@register_backbone(SLOWONLY_R101_SPEC)
def slowonly_r101(*, spatial_strides: Sequence[int] = AVA_STRIDES) -> ResNet3d:
    """SlowOnly R101: stages (3, 4, 23, 3)."""
    return ResNet3d(101, spatial_strides=spatial_strides)
