"""torchvision's video transformers (MViT v1/v2, Video Swin) as feature trunks and as classifiers with a
Grad-CAM hook point, keeping torchvision's module names so its state dicts load unchanged.

Each runs torchvision's own modules in torchvision's order, so at the size a model was built for the
logits equal ``model(x)`` bit for bit. What is added:

* ``grid``, an identity the token grid ``[N, C, T', H', W']`` passes through, the Grad-CAM hook point
  (``lfbtool.recognize.gradcam`` takes ``model.grid`` / ``backbone.grid`` by default). Swin: the normed last
  stage's map (the classifier averages it). MViT: the tokens *entering* the last block, class token
  left out; after the last block only the class token reaches the classifier, so the patch tokens
  there carry no gradient.
* MViT's token grid size is read off the patch projection's output instead of being fixed at build
  time: mvit_v2_s (relative positions, which torchvision resizes as needed) then runs on any clip
  size; mvit_v1_b's absolute position table still fits 16x224x224 clips only (one clear error).

Banks (stride 32, temporal stride 2): Swin's normed map ``[N, 768|1024, T/2, H/32, W/32]``; mvit_v2_s's
normed last tokens without the class token, reshaped to the grid ``[N, 768, T/2, H/32, W/32]``.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torchvision.models import video as tv_video
from torchvision.models.video.swin_transformer import SwinTransformer3d

from lfbtool.errors import SettingError
from lfbtool.models.registry import register_backbone
from lfbtool.models.specs import (
    MVIT_V2_S_SPEC,
    SWIN3D_B_SPEC,
    SWIN3D_S_SPEC,
    SWIN3D_T_SPEC,
    BackboneSpec,
)

__all__ = ["MViTClassifier", "MViTTrunk", "Swin3dClassifier", "Swin3dTrunk", "as_classifier", "mvit_v2_s",
           "swin3d_b", "swin3d_s", "swin3d_t"]


class Swin3dTrunk(nn.Module):
    """torchvision ``SwinTransformer3d`` without ``avgpool``/``head``: ``[N, 3, T, H, W]`` -> the normed map
    ``[N, C, ceil(T/2), ~H/32, ~W/32]`` (inputs are padded to whole patches and windows)."""

    spec: BackboneSpec

    def __init__(self, model: SwinTransformer3d) -> None:
        super().__init__()
        self.patch_embed = model.patch_embed
        self.pos_drop = model.pos_drop
        self.features = model.features
        self.norm = model.norm
        self.grid = nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        x = self.norm(self.features(self.pos_drop(self.patch_embed(x))))  # [N, T', H', W', C]
        return self.grid(x.permute(0, 4, 1, 2, 3))


class Swin3dClassifier(Swin3dTrunk):
    """The whole classifier (torchvision's keys, ``head.*`` included): average pool of the map, ``head``."""

    def __init__(self, model: SwinTransformer3d) -> None:
        super().__init__(model)
        self.avgpool = model.avgpool
        self.head = model.head

    def forward(self, x: Tensor) -> Tensor:
        return self.head(torch.flatten(self.avgpool(super().forward(x)), 1))


class MViTTrunk(nn.Module):
    """torchvision ``MViT`` without ``head``: ``[N, 3, T, H, W]`` -> normed patch tokens on their grid
    ``[N, C, T', H', W']`` (the class token dropped)."""

    spec: BackboneSpec

    def __init__(self, model: tv_video.MViT, name: str) -> None:
        super().__init__()
        self.name = name
        self.conv_proj = model.conv_proj
        self.pos_encoding = model.pos_encoding
        self.blocks = model.blocks
        self.norm = model.norm
        self.grid = nn.Identity()

    def _check_size(self, thw: tuple[int, int, int]) -> None:
        built = (self.pos_encoding.temporal_size, *self.pos_encoding.spatial_size)
        if self.pos_encoding.spatial_pos is not None and thw != built:
            strides = self.conv_proj.stride
            want = "x".join(str(size * stride) for size, stride in zip(built, strides, strict=True))
            got = "x".join(str(size * stride) for size, stride in zip(thw, strides, strict=True))
            raise SettingError("clip_len", f"{self.name} has an absolute position table for {want} clips (frames x "
                               f"height x width), got about {got}: use {{0}} {built[0] * strides[0]} and a "
                               f"{built[1] * strides[1]} crop")

    def _through_grid(self, x: Tensor, thw: tuple[int, int, int]) -> Tensor:
        """Pass the patch tokens through ``grid`` as ``[N, C, T', H', W']`` and back (values unchanged)."""
        n, _, channels = x.shape
        grid = self.grid(x[:, 1:].transpose(1, 2).reshape(n, channels, *thw))
        return torch.cat((x[:, :1], grid.flatten(2).transpose(1, 2)), dim=1)

    def tokens(self, x: Tensor) -> tuple[Tensor, tuple[int, int, int]]:
        """Normed tokens ``[N, 1 + T'H'W', C]`` (class token first) and their grid size ``(T', H', W')``."""
        x = self.conv_proj(x)
        thw = (int(x.shape[2]), int(x.shape[3]), int(x.shape[4]))
        self._check_size(thw)
        x = self.pos_encoding(x.flatten(2).transpose(1, 2))
        for block in self.blocks[:-1]:
            x, thw = block(x, thw)
        x, thw = self.blocks[-1](self._through_grid(x, thw), thw)
        return self.norm(x), thw

    def forward(self, x: Tensor) -> Tensor:
        tokens, thw = self.tokens(x)
        return tokens[:, 1:].transpose(1, 2).reshape(tokens.shape[0], tokens.shape[2], *thw)


class MViTClassifier(MViTTrunk):
    """The whole classifier (torchvision's keys, ``head.*`` included): ``head`` of the normed class token."""

    def __init__(self, model: tv_video.MViT, name: str) -> None:
        super().__init__(model, name)
        self.head = model.head

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.tokens(x)[0][:, 0])


def as_classifier(model: nn.Module, name: str) -> nn.Module:
    """A torchvision MViT / SwinTransformer3d as the same classifier with the ``grid`` hook point and
    MViT's grid size from the input; any other model as it is."""
    if isinstance(model, tv_video.MViT):
        return MViTClassifier(model, name)
    if isinstance(model, SwinTransformer3d):
        return Swin3dClassifier(model)
    return model


@register_backbone(MVIT_V2_S_SPEC)
def mvit_v2_s() -> nn.Module:
    """MViT-v2-S trunk, random weights (built for 16x224x224 as torchvision builds it; runs on any size)."""
    return MViTTrunk(tv_video.mvit_v2_s(weights=None), "mvit_v2_s")


@register_backbone(SWIN3D_T_SPEC)
def swin3d_t() -> nn.Module:
    """Video Swin-T trunk, random weights."""
    return Swin3dTrunk(tv_video.swin3d_t(weights=None))


@register_backbone(SWIN3D_S_SPEC)
def swin3d_s() -> nn.Module:
    """Video Swin-S trunk, random weights."""
    return Swin3dTrunk(tv_video.swin3d_s(weights=None))


@register_backbone(SWIN3D_B_SPEC)
def swin3d_b() -> nn.Module:
    """Video Swin-B trunk, random weights."""
    return Swin3dTrunk(tv_video.swin3d_b(weights=None))
