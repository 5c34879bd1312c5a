"""torchvision video classifiers as feature trunks: r3d_18, mc3_18, r2plus1d_18, s3d.

The trunk keeps torchvision's module names (``stem``/``layer1..4``, ``features``), so a torchvision
classifier state_dict loads into it once the classifier parts (``fc.``, ``classifier.``) are dropped.
Strides (checked in tests):

* r3d_18, r2plus1d_18: spatial 16, temporal 8 (layers 2-4 stride in time too).
* mc3_18: spatial 16, temporal 1 (only the stem and layer1 are 3D; layers 2-4 stride in space only).
* s3d: spatial 32, temporal 8; its last max-pool has a temporal kernel of 2, so a clip needs at least
  5 frames.
"""

from __future__ import annotations

from torch import Tensor, nn
from torchvision.models import video as tv_video

from lfbtool.errors import LfbError
from lfbtool.models.registry import register_backbone
from lfbtool.models.specs import MC3_18_SPEC, R2PLUS1D_18_SPEC, R3D_18_SPEC, S3D_SPEC, BackboneSpec

__all__ = ["VideoResNetTrunk", "S3DTrunk", "r3d_18", "mc3_18", "r2plus1d_18", "s3d"]


class VideoResNetTrunk(nn.Module):
    """torchvision ``VideoResNet`` without ``avgpool``/``fc``: stem and layer1-4 under their own names."""

    spec: BackboneSpec

    def __init__(self, model: tv_video.VideoResNet) -> None:
        super().__init__()
        self.stem = model.stem
        self.layer1 = model.layer1
        self.layer2 = model.layer2
        self.layer3 = model.layer3
        self.layer4 = model.layer4

    def forward(self, x: Tensor) -> Tensor:
        """``x`` normalized float [N, 3, T, H, W] -> [N, 512, T', H/16, W/16]."""
        x = self.stem(x)
        x = self.layer1(x)
        x = self.layer2(x)
        x = self.layer3(x)
        return self.layer4(x)


class S3DTrunk(nn.Module):
    """torchvision ``S3D.features`` (through Mixed_5c); the avgpool/classifier head is dropped."""

    spec: BackboneSpec
    min_frames = 5

    def __init__(self, model: tv_video.S3D) -> None:
        super().__init__()
        self.features = model.features

    def forward(self, x: Tensor) -> Tensor:
        """``x`` normalized float [N, 3, T, H, W] (T >= 5) -> [N, 1024, ~T/8, ~H/32, ~W/32]."""
        if x.shape[2] < self.min_frames:
            raise LfbError(f"s3d needs clips of at least {self.min_frames} frames, got {x.shape[2]}")
        return self.features(x)


@register_backbone(R3D_18_SPEC)
def r3d_18() -> nn.Module:
    """R3D-18 trunk with random weights."""
    return VideoResNetTrunk(tv_video.r3d_18(weights=None))


@register_backbone(MC3_18_SPEC)
def mc3_18() -> nn.Module:
    """MC3-18 trunk with random weights."""
    return VideoResNetTrunk(tv_video.mc3_18(weights=None))


@register_backbone(R2PLUS1D_18_SPEC)
def r2plus1d_18() -> nn.Module:
    """R(2+1)D-18 trunk with random weights."""
    return VideoResNetTrunk(tv_video.r2plus1d_18(weights=None))


@register_backbone(S3D_SPEC)
def s3d() -> nn.Module:
    """S3D features with random weights."""
    return S3DTrunk(tv_video.s3d(weights=None))
