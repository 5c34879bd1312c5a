"""SlowOnly ResNet-50 (the AVA LFB backbone) with MMAction2's state_dict layout.

Mirrors MMAction2 ``ResNet3dSlowOnly(depth=50, lateral=False, conv1_kernel=(1, 7, 7),
conv1_stride_t=1, pool1_stride_t=1, inflate=(0, 0, 1, 1), spatial_strides=(1, 2, 2, 1),
with_pool2=False)`` so that ``backbone.*`` keys of MMAction2 checkpoints load unchanged: every conv
sits in a ``ConvModule``-like block with children ``conv`` and ``bn``. Written in the style of
torchvision's ``models/video/resnet.py``: plain modules and explicit builders.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from lfbtool.models.normalization import MMACTION_NORMALIZATION
from lfbtool.models.registry import BackboneSpec, register_backbone

__all__ = ["ConvBN3d", "Bottleneck3d", "SlowOnlyResNet3d", "slowonly_r50"]

Triple = tuple[int, int, int]


class ConvBN3d(nn.Module):
    """MMCV ``ConvModule``: Conv3d (no bias) -> BatchNorm3d (eps 1e-5) -> optional ReLU.

    The child names ``conv`` and ``bn`` are what MMAction2 checkpoints use.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: Triple,
        stride: Triple = (1, 1, 1),
        padding: Triple = (0, 0, 0),
        relu: bool = True,
    ) -> None:
        super().__init__()
        self.conv = nn.Conv3d(in_channels, out_channels, kernel_size, stride, padding, bias=False)
        self.bn = nn.BatchNorm3d(out_channels, eps=1e-5)
        self.relu: nn.Module | None = nn.ReLU(inplace=True) if relu else None

    def forward(self, x: Tensor) -> Tensor:
        x = self.bn(self.conv(x))
        return self.relu(x) if self.relu is not None else x


class Bottleneck3d(nn.Module):
    """ResNet bottleneck, 'pytorch' style: the spatial stride sits on conv2 (the 3x3).

    Inflated blocks (stages 3 and 4 of SlowOnly) use a (3, 1, 1) temporal kernel in conv1.
    conv3 has no ReLU; the ReLU comes after the residual add.
    """

    expansion = 4

    def __init__(
        self,
        inplanes: int,
        planes: int,
        spatial_stride: int = 1,
        inflate: bool = False,
        downsample: nn.Module | None = None,
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

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.conv3(self.conv2(self.conv1(x)))
        return self.relu(out + identity)


def make_res_layer(
    inplanes: int, planes: int, blocks: int, *, spatial_stride: int, inflate: bool
) -> nn.Sequential:
    """One stage; block 0 carries the stride and a 1x1x1 conv + BN shortcut when shapes change."""
    out_channels = planes * Bottleneck3d.expansion
    downsample = None
    if spatial_stride != 1 or inplanes != out_channels:
        downsample = ConvBN3d(
            inplanes, out_channels, (1, 1, 1), stride=(1, spatial_stride, spatial_stride), relu=False
        )
    layers = [Bottleneck3d(inplanes, planes, spatial_stride, inflate, downsample)]
    layers += [Bottleneck3d(out_channels, planes, 1, inflate) for _ in range(1, blocks)]
    return nn.Sequential(*layers)


class SlowOnlyResNet3d(nn.Module):
    """Stem (conv (1,7,7)/(1,2,2) + maxpool (1,3,3)/(1,2,2)) and four bottleneck stages, no pool2."""

    spec: BackboneSpec

    def __init__(
        self,
        stage_blocks: Sequence[int] = (3, 4, 6, 3),
        spatial_strides: Sequence[int] = (1, 2, 2, 1),
        inflate: Sequence[bool] = (False, False, True, True),
        base_channels: int = 64,
    ) -> None:
        super().__init__()
        self.conv1 = ConvBN3d(3, base_channels, (1, 7, 7), stride=(1, 2, 2), padding=(0, 3, 3))
        self.maxpool = nn.MaxPool3d(kernel_size=(1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1))
        inplanes = base_channels
        for index, blocks in enumerate(stage_blocks):
            planes = base_channels * 2**index
            layer = make_res_layer(
                inplanes, planes, blocks, spatial_stride=spatial_strides[index], inflate=inflate[index]
            )
            self.add_module(f"layer{index + 1}", layer)
            inplanes = planes * Bottleneck3d.expansion
        self.out_channels = inplanes
        self._init_weights()

    def _init_weights(self) -> None:
        """MMAction2's from-scratch init (kaiming convs, unit BN); real weights come from checkpoints."""
        for module in self.modules():
            if isinstance(module, nn.Conv3d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, nn.BatchNorm3d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    def forward(self, x: Tensor) -> Tensor:
        """``x`` normalized float [N, 3, T, H, W] -> features [N, 2048, T, H/16, W/16]."""
        x = self.maxpool(self.conv1(x))
        x = self.layer1(x)
        x = self.layer2(x)
        x = self.layer3(x)
        return self.layer4(x)


SLOWONLY_R50_SPEC = BackboneSpec(
    name="slowonly_r50",
    channels=2048,
    stride=16,
    normalization=MMACTION_NORMALIZATION,
    description="MMAction2 SlowOnly ResNet-50 (AVA LFB backbone)",
    checkpoint_prefix="backbone.",
    mmaction_configs=(
        "slowonly_kinetics400-pretrained-r50_8xb16-4x16x1-20e_ava21-rgb",
        "slowonly_kinetics400-pretrained-r50_8xb8-8x8x1-20e_ava21-rgb",
        "slowonly_imagenet-pretrained-r50_8xb16-4x16x1-steplr-150e_kinetics400-rgb",
        "slowonly_r50_4x16x1_256e_kinetics400_rgb (0.x)",
    ),
)


@register_backbone(SLOWONLY_R50_SPEC)
def slowonly_r50() -> SlowOnlyResNet3d:
    """SlowOnly R50 with random weights; load an MMAction2 checkpoint with load_backbone_weights."""
    return SlowOnlyResNet3d()
