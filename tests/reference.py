"""Independent functional forwards of MMAction2's ResNet3d trunks and VideoMAE ViT, for checking
lfbtool's modules.

Written from MMAction2's ResNet3d / ResNet3dSlowOnly / ResNet3dSlowFast / VisionTransformer (vit_mae)
and MMCV's NonLocal3d / FFN descriptions only, with torch.nn.functional, reading weights by their
MMAction2 key names. It must not import lfbtool.models.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

BN_EPS = 1e-5
STAGES = (3, 4, 6, 3)  # bottlenecks per stage (ResNet-50)
DEPTH_STAGES = {50: STAGES, 101: (3, 4, 23, 3)}
STAGE_SPATIAL_STRIDE = (1, 2, 2, 1)  # AVA detectors (output stride 16)
KINETICS_SPATIAL_STRIDE = (1, 2, 2, 2)  # MMAction2's ResNet3d default, used by its Kinetics recognizers
STAGE_INFLATED = (False, False, True, True)  # 3x1x1 temporal kernel in conv1 of every block
NL_R50 = ((0, 0, 0), (1, 0, 1, 0), (1, 0, 1, 0, 1, 0), (0, 0, 0))  # MMAction2 non-local SlowOnly
FAST_BASE = 8  # 64 / channel_ratio 8


def _conv_bn(sd: dict[str, Tensor], name: str, x: Tensor, stride, padding, relu: bool) -> Tensor:
    """MMCV ConvModule: ``{name}.conv`` (no bias), ``{name}.bn`` (eval), optional ReLU."""
    x = F.conv3d(x, sd[f"{name}.conv.weight"], None, stride, padding)
    x = F.batch_norm(
        x,
        sd[f"{name}.bn.running_mean"],
        sd[f"{name}.bn.running_var"],
        sd[f"{name}.bn.weight"],
        sd[f"{name}.bn.bias"],
        training=False,
        momentum=0.0,
        eps=BN_EPS,
    )
    return F.relu(x) if relu else x


def _non_local(sd: dict[str, Tensor], name: str, x: Tensor) -> Tensor:
    """Embedded Gaussian, sub-sampled (spatial 2x2 max-pool on g and phi), scaled by 1/sqrt(C/2)."""
    n, c, t, h, w = x.shape
    inter = c // 2

    def project(key: str, pool: bool) -> Tensor:
        y = F.conv3d(x, sd[f"{name}.{key}.conv.weight"], sd[f"{name}.{key}.conv.bias"])
        if pool:
            y = F.max_pool3d(y, (1, 2, 2), (1, 2, 2))
        return y.reshape(n, inter, -1)

    theta, phi, g = project("theta", False), project("phi.0", True), project("g.0", True)
    attention = torch.softmax(torch.bmm(theta.transpose(1, 2), phi) / inter**0.5, dim=-1)  # [n, THW, T'H'W']
    y = torch.bmm(attention, g.transpose(1, 2)).transpose(1, 2).reshape(n, inter, t, h, w)
    return x + _conv_bn(sd, f"{name}.conv_out", y, (1, 1, 1), (0, 0, 0), False)


def _bottleneck(sd: dict[str, Tensor], name: str, x: Tensor, stride: int, inflated: bool,
                non_local: bool = False) -> Tensor:
    if inflated:
        out = _conv_bn(sd, f"{name}.conv1", x, (1, 1, 1), (1, 0, 0), True)
    else:
        out = _conv_bn(sd, f"{name}.conv1", x, (1, 1, 1), (0, 0, 0), True)
    out = _conv_bn(sd, f"{name}.conv2", out, (1, stride, stride), (0, 1, 1), True)
    out = _conv_bn(sd, f"{name}.conv3", out, (1, 1, 1), (0, 0, 0), False)
    if f"{name}.downsample.conv.weight" in sd:
        identity = _conv_bn(sd, f"{name}.downsample", x, (1, stride, stride), (0, 0, 0), False)
    else:
        identity = x
    out = F.relu(out + identity)
    return _non_local(sd, f"{name}.non_local_block", out) if non_local else out


def _stem(sd: dict[str, Tensor], prefix: str, x: Tensor, kernel_t: int) -> Tensor:
    x = _conv_bn(sd, f"{prefix}conv1", x, (1, 2, 2), (kernel_t // 2, 3, 3), True)
    return F.max_pool3d(x, kernel_size=(1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1))


def _stage(sd: dict[str, Tensor], prefix: str, x: Tensor, stage: int, blocks: int, inflated: bool,
           non_local: tuple[int, ...] | None = None, strides: tuple[int, ...] = STAGE_SPATIAL_STRIDE) -> Tensor:
    for block in range(blocks):
        stride = strides[stage] if block == 0 else 1
        flag = bool(non_local[block]) if non_local else False
        x = _bottleneck(sd, f"{prefix}layer{stage + 1}.{block}", x, stride, inflated, flag)
    return x


def slowonly_reference(state_dict: dict[str, Tensor], x: Tensor, *, depth: int = 50,
                       non_local: tuple[tuple[int, ...], ...] | None = None,
                       strides: tuple[int, ...] = STAGE_SPATIAL_STRIDE) -> Tensor:
    """SlowOnly R50/R101 (optionally non-local): [N, 3, T, H, W] -> [N, 2048, T, H/16, W/16]."""
    x = _stem(state_dict, "", x, 1)
    for stage, blocks in enumerate(DEPTH_STAGES[depth]):
        x = _stage(state_dict, "", x, stage, blocks, STAGE_INFLATED[stage], non_local[stage] if non_local else None,
                   strides)
    return x


def slowonly_r50_reference(state_dict: dict[str, Tensor], x: Tensor,
                           strides: tuple[int, ...] = STAGE_SPATIAL_STRIDE) -> Tensor:
    """[N, 3, T, H, W] normalized input -> [N, 2048, T, H/16, W/16] features (H/32 with Kinetics strides)."""
    return slowonly_reference(state_dict, x, strides=strides)


def slowfast_r50_reference(state_dict: dict[str, Tensor], x: Tensor, *, rate: int, speed: int,
                           fusion_kernel: int) -> tuple[Tensor, Tensor]:
    """SlowFast R50: slow sees frames 0, rate, 2 rate, ...; fast every (rate // speed)-th frame; after the
    stem and stages 1-3 the fast map goes through a temporal-stride-``speed`` conv into the slow one."""
    sd = state_dict
    slow = _stem(sd, "slow_path.", x[:, :, ::rate], 1)
    fast = _stem(sd, "fast_path.", x[:, :, :: rate // speed], 5)
    pad = (fusion_kernel - 1) // 2

    def fuse(slow: Tensor, fast: Tensor, name: str) -> Tensor:
        lateral = F.conv3d(fast, sd[f"slow_path.{name}.conv.weight"], None, (speed, 1, 1), (pad, 0, 0))
        return torch.cat([slow, lateral], dim=1)

    slow = fuse(slow, fast, "conv1_lateral")
    for stage, blocks in enumerate(STAGES):
        slow = _stage(sd, "slow_path.", slow, stage, blocks, STAGE_INFLATED[stage])
        fast = _stage(sd, "fast_path.", fast, stage, blocks, True)
        if stage < 3:
            slow = fuse(slow, fast, f"layer{stage + 1}_lateral")
    return slow, fast


class _Shapes(dict):
    def conv_module(self, name: str, cin: int, cout: int, kernel: tuple[int, int, int], bn: bool = True,
                    bias: bool = False) -> None:
        self[f"{name}.conv.weight"] = (cout, cin, *kernel)
        if bias:
            self[f"{name}.conv.bias"] = (cout,)
        if bn:
            for buf in ("weight", "bias", "running_mean", "running_var"):
                self[f"{name}.bn.{buf}"] = (cout,)
            self[f"{name}.bn.num_batches_tracked"] = ()

    def trunk(self, prefix: str, *, depth: int = 50, base: int = 64, conv1_t: int = 1,
              inflated: tuple[bool, ...] = STAGE_INFLATED, non_local=None, lateral=(0, 0, 0, 0)) -> None:
        self.conv_module(f"{prefix}conv1", 3, base, (conv1_t, 7, 7))
        inplanes = base
        for stage, blocks in enumerate(DEPTH_STAGES[depth]):
            planes = base * 2**stage
            for block in range(blocks):
                name = f"{prefix}layer{stage + 1}.{block}"
                cin = inplanes + lateral[stage] if block == 0 else planes * 4
                self.conv_module(f"{name}.conv1", cin, planes, (3, 1, 1) if inflated[stage] else (1, 1, 1))
                self.conv_module(f"{name}.conv2", planes, planes, (1, 3, 3))
                self.conv_module(f"{name}.conv3", planes, planes * 4, (1, 1, 1))
                if block == 0:
                    self.conv_module(f"{name}.downsample", cin, planes * 4, (1, 1, 1))
                if non_local and non_local[stage][block]:
                    c, half = planes * 4, planes * 2
                    for key in ("g.0", "theta", "phi.0"):
                        self.conv_module(f"{name}.non_local_block.{key}", c, half, (1, 1, 1), bn=False, bias=True)
                    self.conv_module(f"{name}.non_local_block.conv_out", half, c, (1, 1, 1))
            inplanes = planes * 4


def slowonly_r50_expected_shapes() -> dict[str, tuple[int, ...]]:
    """Every state_dict key of MMAction2's SlowOnly R50 and its shape, derived from the architecture."""
    return slowonly_expected_shapes()


def slowonly_expected_shapes(depth: int = 50, non_local=None) -> dict[str, tuple[int, ...]]:
    """SlowOnly R50 / R101 / non-local R50 keys and shapes (MMCV NonLocal3d: g and phi are
    ``Sequential(ConvModule, MaxPool3d)`` with sub_sample, hence ``g.0``/``phi.0``)."""
    shapes = _Shapes()
    shapes.trunk("", depth=depth, non_local=non_local)
    return dict(shapes)


def slowfast_r50_expected_shapes(fusion_kernel: int) -> dict[str, tuple[int, ...]]:
    """SlowFast R50 keys and shapes: laterals are conv-only (no bias, no norm), 2x the fast channels."""
    shapes = _Shapes()
    fast_out = [FAST_BASE, FAST_BASE * 4, FAST_BASE * 8, FAST_BASE * 16]  # stem, stages 1-3
    shapes.trunk("slow_path.", lateral=tuple(2 * c for c in fast_out))
    shapes.trunk("fast_path.", base=FAST_BASE, conv1_t=5, inflated=(True,) * 4)
    for name, c in zip(("conv1_lateral", "layer1_lateral", "layer2_lateral", "layer3_lateral"), fast_out, strict=True):
        shapes.conv_module(f"slow_path.{name}", c, 2 * c, (fusion_kernel, 1, 1), bn=False)
    return dict(shapes)


# -- VideoMAE VisionTransformer (mmaction/models/backbones/vit_mae.py) ------------------------------------
VIT_LN_EPS = 1e-6


def sinusoid_reference(positions: range, dims: int) -> Tensor:
    """Rows ``positions`` of the fixed VideoMAE table, one entry at a time in float64 (math.sin / math.cos),
    cast to float32: ``[1, len(positions), dims]``."""
    rows = [[(math.sin if i % 2 == 0 else math.cos)(p / 10000 ** (2 * (i // 2) / dims)) for i in range(dims)]
            for p in positions]
    return torch.tensor(rows, dtype=torch.float64).to(torch.float32)[None]


def videomae_expected_shapes(dims: int, depth: int, *, mean_pooling: bool, positions: int = 1568,
                             mlp_ratio: int = 4) -> dict[str, tuple[int, ...]]:
    """Every key of MMAction2's ``VisionTransformer`` state_dict and its shape: MMCV ``PatchEmbed``
    (``projection``), the ``pos_embed`` buffer, blocks with MMCV ``FFN`` (``layers.0.0``, ``layers.1``),
    then ``fc_norm`` (``use_mean_pooling=True``) or ``norm``."""
    shapes: dict[str, tuple[int, ...]] = {
        "pos_embed": (1, positions, dims),
        "patch_embed.projection.weight": (dims, 3, 2, 16, 16), "patch_embed.projection.bias": (dims,),
    }
    hidden = dims * mlp_ratio
    for i in range(depth):
        block = {
            "norm1.weight": (dims,), "norm1.bias": (dims,), "attn.q_bias": (dims,), "attn.v_bias": (dims,),
            "attn.qkv.weight": (3 * dims, dims), "attn.proj.weight": (dims, dims), "attn.proj.bias": (dims,),
            "norm2.weight": (dims,), "norm2.bias": (dims,), "mlp.layers.0.0.weight": (hidden, dims),
            "mlp.layers.0.0.bias": (hidden,), "mlp.layers.1.weight": (dims, hidden), "mlp.layers.1.bias": (dims,),
        }
        shapes.update({f"blocks.{i}.{key}": shape for key, shape in block.items()})
    final = "fc_norm" if mean_pooling else "norm"
    shapes.update({f"{final}.weight": (dims,), f"{final}.bias": (dims,)})
    return shapes


def videomae_reference(sd: dict[str, Tensor], x: Tensor, *, heads: int, img_size: int = 224) -> Tensor:
    """[N, 3, T, H, W] -> the detector's normed token grid [N, C, T/2, H/16, W/16] (state with ``norm.*``)
    or the recognizer's ``fc_norm`` of the token mean [N, C] (state with ``fc_norm.*``).

    Attention written out: q scaled, ``q @ k^T``, softmax, ``@ v``; the k bias is zero. The position
    table's per-time-step 14x14 map is resized bicubically when the token grid differs."""
    n, _, frames, height, width = x.shape
    dims = sd["patch_embed.projection.weight"].shape[0]
    depth = 1 + max(int(key.split(".")[1]) for key in sd if key.startswith("blocks."))
    h, w, g = height // 16, width // 16, img_size // 16
    tokens = F.conv3d(x, sd["patch_embed.projection.weight"], sd["patch_embed.projection.bias"], stride=(2, 16, 16))
    tokens = tokens.flatten(2).transpose(1, 2)
    table = sd["pos_embed"]
    if (h, w) != (g, g):
        per_step = table.reshape(-1, g, g, dims).permute(0, 3, 1, 2)
        resized = F.interpolate(per_step, size=(h, w), mode="bicubic", align_corners=False)
        table = resized.permute(0, 2, 3, 1).reshape(1, -1, dims)
    tokens = tokens + table
    length, head_dims = tokens.shape[1], dims // heads

    def norm(y: Tensor, name: str) -> Tensor:
        return F.layer_norm(y, (dims,), sd[f"{name}.weight"], sd[f"{name}.bias"], VIT_LN_EPS)

    for i in range(depth):
        p = f"blocks.{i}."
        bias = torch.cat([sd[p + "attn.q_bias"], torch.zeros(dims), sd[p + "attn.v_bias"]])
        qkv = F.linear(norm(tokens, p + "norm1"), sd[p + "attn.qkv.weight"], bias)
        q, k, v = qkv.reshape(n, length, 3, heads, head_dims).permute(2, 0, 3, 1, 4)
        weights = torch.softmax(torch.matmul(q * head_dims**-0.5, k.transpose(-2, -1)), dim=-1)
        attended = torch.matmul(weights, v).transpose(1, 2).reshape(n, length, dims)
        tokens = tokens + F.linear(attended, sd[p + "attn.proj.weight"], sd[p + "attn.proj.bias"])
        hidden = F.gelu(F.linear(norm(tokens, p + "norm2"), sd[p + "mlp.layers.0.0.weight"],
                                 sd[p + "mlp.layers.0.0.bias"]))
        tokens = tokens + F.linear(hidden, sd[p + "mlp.layers.1.weight"], sd[p + "mlp.layers.1.bias"])
    if "fc_norm.weight" in sd:
        return norm(tokens.mean(dim=1), "fc_norm")
    return norm(tokens, "norm").reshape(n, frames // 2, h, w, dims).permute(0, 4, 1, 2, 3)
