"""Build a recognizer by name: an lfbtool backbone with its MMAction2 head, a torchvision video
classifier, or ``torchvision.<image model>`` run TSN-style; then load a checkpoint or torchvision weights
through the one strict loader.

Test settings and normalization come from data: a backbone's spec (``spec.test_clip``,
``spec.normalization``; torchvision's video models have specs too), and for ``torchvision.<image model>``
torchvision's own weights metadata (mean, std, resize and crop of the published transforms).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from torch import Tensor

from lfbtool.choices import did_you_mean
from lfbtool.errors import LfbError
from lfbtool.models.checkpoint import load_strict, read_checkpoint
from lfbtool.models.factory import create_backbone
from lfbtool.models.heads import SlowFastHead, TimeSformerHead
from lfbtool.models.normalization import Normalization
from lfbtool.models.recognizers import TSN2D, BaseRecognizer, Recognizer3D, TorchvisionVideoClassifier
from lfbtool.models.registry import TestDefaults, backbone_spec, list_backbones
from lfbtool.models.weights import resolve_weights, weights_state_dict

__all__ = ["BuiltRecognizer", "build_recognizer", "create_recognizer", "known_recognizers"]

TORCHVISION_2D_PREFIX = "torchvision."
#: MMAction2 TSN tests 25 single-frame segments.
TSN_SEGMENTS = 25
_IMAGENET = Normalization((0.485, 0.456, 0.406), (0.229, 0.224, 0.225), 1.0)


@dataclass
class BuiltRecognizer:
    recognizer: BaseRecognizer
    categories: list[str] | None  # class names from torchvision weights metadata, when --weights was used


def _own_backbones() -> list[str]:
    return [spec.name for spec in list_backbones() if spec.torchvision_model is None]


def _video_classifiers() -> list[str]:
    return [spec.name for spec in list_backbones() if spec.torchvision_model is not None]


def known_recognizers() -> list[str]:
    """Names ``build_recognizer`` accepts (2D models as ``torchvision.<name>``)."""
    return _own_backbones() + _video_classifiers() + [f"{TORCHVISION_2D_PREFIX}<image model, e.g. resnet50>"]


def _published_transforms(tv_name: str) -> tuple[Normalization, int, int] | None:
    """Mean/std, short side and crop of torchvision's published weights for ``tv_name``, if any."""
    import torchvision.models as tvm

    try:
        t = tvm.get_model_weights(tv_name).DEFAULT.transforms()
    except (ValueError, KeyError, AttributeError):
        return None
    norm = Normalization(tuple(t.mean), tuple(t.std), 1.0)  # type: ignore[arg-type]
    return norm, int(min(t.resize_size)), int(t.crop_size[0])


def create_recognizer(name: str, num_classes: int) -> BaseRecognizer:
    """A recognizer with random weights: ``slowonly_r50``-style backbones get MMAction2's head."""
    recognizer = _create(name, num_classes)
    if not recognizer.is_2d:
        recognizer.clip_frames = backbone_spec(name).clip_frames
    return recognizer


def _create(name: str, num_classes: int) -> BaseRecognizer:
    import torchvision.models as tvm

    if name in _own_backbones():
        spec = backbone_spec(name)
        if spec.head == "timesformer":  # VideoMAE: the backbone mean-pools and fc_norms its tokens
            backbone = create_backbone(name, mean_pooling=True)
            return Recognizer3D(backbone, num_classes, head=TimeSformerHead(num_classes, spec.channels))
        backbone = create_backbone(name, spatial_strides=spec.recognition_strides)
        head = SlowFastHead(num_classes, in_channels=spec.channels) if spec.head == "slowfast" else None
        return Recognizer3D(backbone, num_classes, head=head)
    if name in _video_classifiers():
        from lfbtool.models.tv_transformers import as_classifier

        spec = backbone_spec(name)
        model = as_classifier(tvm.get_model(name, weights=None, num_classes=num_classes), name)
        return TorchvisionVideoClassifier(model, num_classes, normalization=spec.normalization,
                                          defaults=spec.test_clip, name=name)
    if name.startswith(TORCHVISION_2D_PREFIX):
        tv_name = name[len(TORCHVISION_2D_PREFIX) :]
        if tv_name not in tvm.list_models(module=tvm) or tv_name in tvm.list_models(module=tvm.video):
            raise LfbError(f"unknown torchvision image model {tv_name!r}; see torchvision.models.list_models()")
        norm, short, crop = _published_transforms(tv_name) or (_IMAGENET, 256, 224)
        model = tvm.get_model(tv_name, weights=None, num_classes=num_classes)
        return TSN2D(model, num_classes, normalization=norm, defaults=TestDefaults(1, 1, TSN_SEGMENTS, short, crop),
                     name=name)
    known = known_recognizers()
    raise LfbError(f"unknown backbone {name!r}{did_you_mean(name, known)} (known: {', '.join(known)})")


def build_recognizer(
    name: str, *, checkpoint: str | None = None, weights: str | None = None, num_classes: int | None = None
) -> BuiltRecognizer:
    """Build the recognizer ``name`` and load ``checkpoint`` (a local file) or torchvision ``weights``.

    num_classes comes from the checkpoint's classifier, else the weights' categories, else
    ``num_classes``, else 400 (Kinetics-400).
    """
    if checkpoint is not None and weights is not None:
        raise LfbError("pass either --checkpoint or --weights, not both")
    tv_name = name.removeprefix(TORCHVISION_2D_PREFIX)
    state: dict[str, Tensor] | None = None
    categories: list[str] | None = None
    if checkpoint is not None:
        state = read_checkpoint(checkpoint)
    if weights is not None:
        if name in _own_backbones():
            raise LfbError(f"--weights takes torchvision weights; {name} loads an MMAction2 --checkpoint")
        resolved = resolve_weights(tv_name, weights)
        categories = list(resolved.meta["categories"])
        state = weights_state_dict(resolved)
    classes = _num_classes(name, tv_name, state) or (len(categories) if categories else None) or num_classes or 400
    recognizer = create_recognizer(name, classes)
    if state is not None:
        load_strict(recognizer.weights_module(), state, source=str(checkpoint or weights), target=recognizer.name)
    return BuiltRecognizer(recognizer, categories)


def _num_classes(name: str, tv_name: str, state: Mapping[str, Tensor] | None) -> int | None:
    """The classifier width a checkpoint implies, or None when it does not say."""
    if state is None:
        return None
    if name in _own_backbones():
        weight = state.get("cls_head.fc_cls.weight")
        return int(weight.shape[0]) if weight is not None else None
    import torchvision.models as tvm

    try:
        reference: Mapping[str, Any] = tvm.get_model(tv_name, weights=None).state_dict()
    except ValueError:
        return None
    default = 1000 if name.startswith(TORCHVISION_2D_PREFIX) else 400
    widths = {
        int(state[k].shape[0])
        for k, v in reference.items()
        if k in state and v.ndim >= 1 and v.shape[0] == default and state[k].ndim == v.ndim
        and state[k].shape[0] != default
    }
    return widths.pop() if len(widths) == 1 else None

