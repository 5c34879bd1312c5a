"""MMAction2's VideoMAE ``VisionTransformer`` (``mmaction/models/backbones/vit_mae.py``) in its key layout.

Keys, as MMAction2 1.2.0 names them (so ``backbone.*`` of its checkpoints load strictly):
``patch_embed.projection`` (Conv3d, tubelets 2x16x16), ``pos_embed`` (a buffer: the fixed sinusoid
table for ``img_size`` 224 and ``num_frames`` 16), per block ``norm1``, ``attn.qkv.weight`` (no bias)
with ``attn.q_bias`` / ``attn.v_bias`` (k's bias is zero), ``attn.proj``, ``norm2``,
``mlp.layers.0.0`` / ``mlp.layers.1`` (MMCV's FFN); then ``norm`` (detectors: ``use_mean_pooling=False``,
``return_feat_map=True``) or ``fc_norm`` (Kinetics recognizers: mean over tokens, then LayerNorm).
LayerNorms use eps 1e-6; GELU is the exact one; dropout and drop path are off (test time).

At another frame size than 224 the table's spatial part is resized per time step (bicubic,
``align_corners=False``), as MMAction2 does; the time steps are not, so a clip must have
``num_frames`` frames. The detector's output is the token grid ``[N, C, T/2, H/16, W/16]``.

fp32 attention is MMAction2's own sequence (``q * scale @ k^T``, softmax, ``@ v``), so results match
it op for op; under bf16/fp16 autocast, ``scaled_dot_product_attention`` (fused, never materialising
the attention matrix) computes the same attention faster.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lfbtool.errors import LfbError, SettingError
from lfbtool.models.registry import register_backbone
from lfbtool.models.specs import VIT_B_VIDEOMAE_SPEC, VIT_L_VIDEOMAE_SPEC, VIT_S_VIDEOMAE_SPEC, BackboneSpec

__all__ = ["VisionTransformer", "sinusoid_table", "vit_s_videomae", "vit_b_videomae", "vit_l_videomae"]

LN_EPS = 1e-6
PATCH = 16
TUBELET = 2
#: (depth, heads) of each size; the width is the spec's ``channels``.
ARCHITECTURES = {"vit_s_videomae": (12, 6), "vit_b_videomae": (12, 12), "vit_l_videomae": (24, 16)}


def sinusoid_table(positions: int, dims: int) -> Tensor:
    """``[1, positions, dims]`` float32: position p, channel i -> sin (even i) or cos (odd i) of
    ``p / 10000 ** (2 * (i // 2) / dims)``, computed in float64 (VideoMAE's fixed table)."""
    pair = torch.arange(dims, dtype=torch.float64)
    exponent = (pair - torch.remainder(pair, 2)) / dims
    angles = torch.arange(positions).view(-1, 1) * torch.pow(10000, -exponent).view(1, -1)
    table = torch.where(torch.arange(dims) % 2 == 0, torch.sin(angles), torch.cos(angles))
    return table.to(torch.float32).unsqueeze(0)


def fused_attention_wanted(x: Tensor) -> bool:
    """Reduced precision (autocast or a bf16/fp16 input) takes the fused kernel; fp32 the exact sequence."""
    return x.dtype in (torch.bfloat16, torch.float16) or torch.is_autocast_enabled(x.device.type)


class PatchEmbed(nn.Module):
    """Tubelets ``2 x 16 x 16`` -> tokens ``[N, T/2 * H/16 * W/16, C]`` (time-major)."""

    def __init__(self, dims: int) -> None:
        super().__init__()
        self.projection = nn.Conv3d(3, dims, (TUBELET, PATCH, PATCH), stride=(TUBELET, PATCH, PATCH))

    def forward(self, x: Tensor) -> Tensor:
        return self.projection(x).flatten(2).transpose(1, 2)


class Attention(nn.Module):
    """Multi-head self-attention with learnt q and v biases and a zero k bias (``qkv_bias=True``)."""

    def __init__(self, dims: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.scale = (dims // heads) ** -0.5
        self.q_bias = nn.Parameter(torch.zeros(dims))
        self.v_bias = nn.Parameter(torch.zeros(dims))
        self.qkv = nn.Linear(dims, dims * 3, bias=False)
        self.proj = nn.Linear(dims, dims)

    def forward(self, x: Tensor) -> Tensor:
        n, tokens, _ = x.shape
        bias = torch.cat((self.q_bias, torch.zeros_like(self.v_bias), self.v_bias))
        qkv = F.linear(x, self.qkv.weight, bias).reshape(n, tokens, 3, self.heads, -1).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        if fused_attention_wanted(x):
            out = F.scaled_dot_product_attention(q, k, v, scale=self.scale)
        else:
            out = ((q * self.scale) @ k.transpose(-2, -1)).softmax(dim=-1) @ v
        return self.proj(out.transpose(1, 2).reshape(n, tokens, -1))


class FFN(nn.Module):
    """MMCV's ``FFN`` without identity: ``layers.0`` = (Linear, GELU), ``layers.1`` = Linear."""

    def __init__(self, dims: int, hidden: int) -> None:
        super().__init__()
        self.layers = nn.Sequential(nn.Sequential(nn.Linear(dims, hidden), nn.GELU()), nn.Linear(hidden, dims))

    def forward(self, x: Tensor) -> Tensor:
        return self.layers(x)


class Block(nn.Module):
    """Pre-norm transformer block: ``x + attn(norm1(x))``, then ``x + mlp(norm2(x))``."""

    def __init__(self, dims: int, heads: int, mlp_ratio: float = 4.0) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dims, eps=LN_EPS)
        self.attn = Attention(dims, heads)
        self.norm2 = nn.LayerNorm(dims, eps=LN_EPS)
        self.mlp = FFN(dims, int(dims * mlp_ratio))

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class VisionTransformer(nn.Module):
    """VideoMAE ViT. ``mean_pooling=False`` (detectors): ``forward`` gives the normed token grid
    ``[N, C, T/2, H/16, W/16]``; ``mean_pooling=True`` (recognizers): ``fc_norm`` of the token mean, ``[N, C]``.

    ``grid`` is an identity the token grid passes through in both modes: the Grad-CAM hook point (the
    last block's tokens, ``[N, C, T/2, H/16, W/16]``), which ``lfbtool.recognize.gradcam`` takes by default.
    """

    spec: BackboneSpec
    #: The sinusoid table is a fixed function of the sizes: MMAction2 saves it, but a checkpoint
    #: without it (weights converted from another codebase) loads, keeping the computed one.
    derived_buffers = ("pos_embed",)

    def __init__(self, dims: int, depth: int, heads: int, *, mean_pooling: bool = False, img_size: int = 224,
                 num_frames: int = 16, name: str = "vit") -> None:
        super().__init__()
        self.name = name
        self.dims = dims
        self.num_frames = num_frames
        self.grid_size = (img_size // PATCH, img_size // PATCH)
        self.patch_embed = PatchEmbed(dims)
        positions = (num_frames // TUBELET) * self.grid_size[0] * self.grid_size[1]
        self.register_buffer("pos_embed", sinusoid_table(positions, dims))
        self.blocks = nn.ModuleList(Block(dims, heads) for _ in range(depth))
        self.norm: nn.Module = nn.Identity() if mean_pooling else nn.LayerNorm(dims, eps=LN_EPS)
        self.fc_norm = nn.LayerNorm(dims, eps=LN_EPS) if mean_pooling else None
        self.grid = nn.Identity()
        init_weights(self)

    def position_table(self, height: int, width: int) -> Tensor:
        """The table for a ``height x width`` token grid: as stored at ``img_size``, else each time
        step's ``grid_size`` map resized bicubically."""
        if (height, width) == self.grid_size:
            return self.pos_embed
        table = self.pos_embed.reshape(-1, *self.grid_size, self.dims).permute(0, 3, 1, 2)
        table = F.interpolate(table, size=(height, width), mode="bicubic", align_corners=False)
        return table.permute(0, 2, 3, 1).flatten(1, 2).reshape(1, -1, self.dims)

    def forward(self, x: Tensor) -> Tensor:
        """``x`` normalized float ``[N, 3, num_frames, H, W]`` (H, W >= 16)."""
        n, _, frames, height, width = x.shape
        if frames != self.num_frames:
            raise SettingError("clip_len", f"{self.name} takes clips of exactly {self.num_frames} frames (its position "
                               f"table has {self.num_frames // TUBELET} steps of {TUBELET} frames), got {frames}: "
                               f"use {{0}} {self.num_frames}")
        if height < PATCH or width < PATCH:
            raise LfbError(f"{self.name} needs frames of at least {PATCH}x{PATCH} pixels, got {height}x{width}")
        h, w = height // PATCH, width // PATCH
        tokens = self.patch_embed(x) + self.position_table(h, w)
        for block in self.blocks:
            tokens = block(tokens)
        tokens = self.norm(tokens)
        grid = self.grid(tokens.reshape(n, -1, h, w, self.dims).permute(0, 4, 1, 2, 3))
        if self.fc_norm is None:
            return grid
        # permuting back gives the tokens' own layout, so the mean runs exactly as on [N, L, C]
        return self.fc_norm(grid.permute(0, 2, 3, 4, 1).reshape(n, -1, self.dims).mean(1))


def init_weights(model: nn.Module) -> None:
    """MMAction2's init_cfg: linear weights ~ N(0, 0.02) (its TruncNormal cuts at +-2, 100 std away, so a
    plain normal draws the same and is faster), zero biases, unit LayerNorms."""
    for module in model.modules():
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.LayerNorm):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)


def _build(spec: BackboneSpec, *, mean_pooling: bool = False, img_size: int = 224, num_frames: int | None = None,
           depth: int | None = None) -> VisionTransformer:
    """``depth`` (fewer blocks, the same layout) is for fast tests; the registry builds the real one."""
    blocks, heads = ARCHITECTURES[spec.name]
    return VisionTransformer(spec.channels, depth or blocks, heads, mean_pooling=mean_pooling, img_size=img_size,
                             num_frames=num_frames or spec.clip_frames or 16, name=spec.name)


@register_backbone(VIT_S_VIDEOMAE_SPEC)
def vit_s_videomae(**options: object) -> VisionTransformer:
    """ViT-S/16 (VideoMAE V2 distilled), random weights; ``mean_pooling=True`` for the recognizer."""
    return _build(VIT_S_VIDEOMAE_SPEC, **options)  # type: ignore[arg-type]


@register_backbone(VIT_B_VIDEOMAE_SPEC)
def vit_b_videomae(**options: object) -> VisionTransformer:
    """ViT-B/16, random weights; ``mean_pooling=True`` for the recognizer."""
    return _build(VIT_B_VIDEOMAE_SPEC, **options)  # type: ignore[arg-type]


@register_backbone(VIT_L_VIDEOMAE_SPEC)
def vit_l_videomae(**options: object) -> VisionTransformer:
    """ViT-L/16, random weights; ``mean_pooling=True`` for the recognizer."""
    return _build(VIT_L_VIDEOMAE_SPEC, **options)  # type: ignore[arg-type]
