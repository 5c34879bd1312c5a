"""Backbones (registry and factory), checkpoint loading, RoI extraction, the LFB head, recognizers.

The names below load on first use, so that ``from lfbtool.models import list_backbones`` (the
registry and the specs, plain data) does not import torch; building a backbone imports the model
modules, whose ``@register_backbone`` decorators attach the builders (see ``registry``).
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from lfbtool.models import resnet3d, slowfast, tv_transformers, tv_video, vit_mae
    from lfbtool.models.checkpoint import (
        check_finite_weights,
        checkpoint_sha256,
        load_backbone_weights,
        read_checkpoint,
    )
    from lfbtool.models.factory import create_backbone
    from lfbtool.models.lfb_head import LFBHead
    from lfbtool.models.lfb_model import LFBFeatureModel
    from lfbtool.models.normalization import Normalize
    from lfbtool.models.registry import backbone_spec, list_backbones, register_backbone
    from lfbtool.models.roi import RoIFeatureExtractor
    from lfbtool.models.specs import (
        MMACTION_NORMALIZATION,
        TORCHVISION_VIDEO_NORMALIZATION,
        BackboneSpec,
        ClipDefaults,
        Normalization,
        TestDefaults,
    )

_HOMES = {
    "checkpoint": ("check_finite_weights", "checkpoint_sha256", "load_backbone_weights", "read_checkpoint"),
    "factory": ("create_backbone",),
    "lfb_head": ("LFBHead",),
    "lfb_model": ("LFBFeatureModel",),
    "normalization": ("Normalize",),
    "registry": ("backbone_spec", "list_backbones", "register_backbone"),
    "roi": ("RoIFeatureExtractor",),
    "specs": ("BackboneSpec", "ClipDefaults", "MMACTION_NORMALIZATION", "Normalization",
              "TORCHVISION_VIDEO_NORMALIZATION", "TestDefaults"),
}
_MODULE_OF = {name: module for module, names in _HOMES.items() for name in names}

__all__ = ["BackboneSpec", "ClipDefaults", "LFBFeatureModel", "LFBHead", "MMACTION_NORMALIZATION",
           "Normalization", "Normalize", "RoIFeatureExtractor", "TORCHVISION_VIDEO_NORMALIZATION", "TestDefaults",
           "backbone_spec", "check_finite_weights", "checkpoint_sha256", "create_backbone", "list_backbones",
           "load_backbone_weights", "read_checkpoint", "register_backbone", "resnet3d", "slowfast", "tv_transformers", "tv_video", "vit_mae"]


def __getattr__(name: str) -> object:
    if name in ("resnet3d", "slowfast", "tv_transformers", "tv_video", "vit_mae"):
        return import_module(f"lfbtool.models.{name}")
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module 'lfbtool.models' has no attribute {name!r}")
    return getattr(import_module(f"lfbtool.models.{module}"), name)
