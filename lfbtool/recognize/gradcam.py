"""Grad-CAM of a recognizer, as MMAction2's ``GradCAM`` utility (itself from PySlowFast) computes it.

Target = the class score (logit; the mean over segments for a 2D model, TSN's consensus). At the chosen
layer, per time slice: channel weights = spatial mean of the gradients, map = ReLU of the weighted sum
of activations. The map is resized trilinearly (``align_corners=False``) to the clip's ``(T, H, W)``
and min-max normalised: ``(m - min) / (max - min + 1e-20)``.

A 3D model reads one clip ``[3, T, H, W]``; the layer's time axis is the slice axis. A 2D (TSN) model
reads the same tensor as ``T`` single-frame segments (every view of the first crop): each frame's
activation is one time slice, and ``T`` is the number of segments (as MMAction2 does for
``Recognizer2D``).

``lfbtool.gradcam`` (the root's public name) is this module's :func:`gradcam` function, not the module.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lfbtool.errors import LfbError
from lfbtool.models.recognizers import BaseRecognizer

__all__ = ["GradCam", "compute_gradcam", "default_layer_name", "gradcam"]

#: Last backbone stage per recognizer layout, tried in order. Transformers expose ``grid``: their
#: tokens reshaped to ``[N, C, T, H, W]`` (lfbtool.models.vit_mae, lfbtool.models.tv_transformers).
_DEFAULT_LAYERS = ("backbone.grid", "model.grid", "backbone.layer4", "model.layer4", "model.features")


@dataclass
class GradCam:
    map: Tensor  # float32 [T, H, W] in 0..1, on the CPU
    target_class: int
    layer: str


def default_layer_name(recognizer: nn.Module) -> str:
    """The last backbone stage: ``backbone.grid`` / ``model.grid`` (transformers' token grid),
    ``backbone.layer4`` (lfbtool 3D), ``model.layer4`` (torchvision ResNets, 2D and 3D), ``model.features`` (s3d)."""
    names = dict(recognizer.named_modules())
    for name in _DEFAULT_LAYERS:
        if name in names:
            return name
    kind = getattr(recognizer, "name", type(recognizer).__name__)
    raise LfbError(f"--gradcam-layer: no default layer for {kind}; pass a module name from model.named_modules()")


def _layer(recognizer: nn.Module, name: str | None) -> tuple[str, nn.Module]:
    name = (name or default_layer_name(recognizer)).replace("/", ".")
    try:
        return name, recognizer.get_submodule(name)
    except AttributeError:
        raise LfbError(f"--gradcam-layer {name!r}: no such module in {type(recognizer).__name__}") from None


def normalize_map(m: Tensor, delta: float = 1e-20) -> Tensor:
    """Min-max normalisation over the whole map, MMAction2's ``delta``."""
    return (m - m.min()) / (m.max() - m.min() + delta)


def gradcam(
    recognizer: BaseRecognizer, clip: Tensor, *, target_class: int | None = None, layer: str | None = None
) -> Tensor:
    """The Grad-CAM map ``[T, H, W]`` (0..1) of one raw-pixel clip ``[3, T, H, W]``; see :func:`compute_gradcam`."""
    return compute_gradcam(recognizer, clip, target_class=target_class, layer=layer).map


def compute_gradcam(
    recognizer: BaseRecognizer, clip: Tensor, *, target_class: int | None = None, layer: str | None = None
) -> GradCam:
    """Grad-CAM map ``[T, H, W]`` of one raw-pixel clip ``[3, T, H, W]`` (0-255, uint8 or float).

    ``target_class`` defaults to the clip's top-1 class; ``layer`` (dotted or MMAction2's
    ``backbone/layer4`` style) to :func:`default_layer_name`. The recognizer should be in eval mode.
    """
    if clip.ndim != 4 or clip.shape[0] != 3:
        raise LfbError(f"gradcam: expected one clip [3, T, H, W], got {list(clip.shape)}")
    name, module = _layer(recognizer, layer)
    device = recognizer.normalize.mean.device
    t, h, w = (int(s) for s in clip.shape[1:])
    views = clip.permute(1, 0, 2, 3).unsqueeze(2) if recognizer.is_2d else clip.unsqueeze(0)
    captured: list[Tensor] = []
    handle = module.register_forward_hook(lambda _m, _i, out: captured.append(out))
    try:
        with torch.enable_grad():
            logits = recognizer(views.to(device).float())
            cls = int(logits.detach().mean(0).argmax()) if target_class is None else int(target_class)
            if not 0 <= cls < logits.shape[1]:
                raise LfbError(f"--gradcam-class {cls}: the model has {logits.shape[1]} classes")
            if not captured:
                raise LfbError(f"--gradcam-layer {name!r} does not run in the forward")
            activation = captured[-1]
            (gradient,) = torch.autograd.grad(logits[:, cls].mean(), activation)
    finally:
        handle.remove()
    activation, gradient = activation.detach(), gradient.detach()
    if recognizer.is_2d:  # [T, C, h, w]: one slice per segment
        activation, gradient = activation.unsqueeze(0), gradient.unsqueeze(0)
    else:  # [1, C, Tg, h, w] -> [1, Tg, C, h, w]
        if activation.ndim != 5:
            raise LfbError(f"--gradcam-layer {name!r}: needs a [N, C, T, H, W] output, got {list(activation.shape)}")
        activation, gradient = activation.transpose(1, 2), gradient.transpose(1, 2)
    weights = gradient.mean(dim=(-2, -1), keepdim=True)
    cam = F.relu((weights * activation).sum(dim=2))  # [1, Tg, h, w]
    cam = F.interpolate(cam.unsqueeze(1).float(), size=(t, h, w), mode="trilinear", align_corners=False)
    return GradCam(normalize_map(cam[0, 0]).cpu(), cls, name)
