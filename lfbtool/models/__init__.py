"""Backbones (registry and factory), checkpoint loading, RoI extraction, the LFB head, recognizers.

The names below load on first use, so that ``from lfbtool.models import list_backbones`` (the
registry and the specs, plain data) does not import torch; building a backbone imports the model
modules, whose ``@register_backbone`` decorators attach the builders (see ``registry``).
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING

from lfbtool import _lazy_names

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

__all__ = ["BackboneSpec", "ClipDefaults", "LFBFeatureModel", "LFBHead", "MMACTION_NORMALIZATION",
           "Normalization", "Normalize", "RoIFeatureExtractor", "TORCHVISION_VIDEO_NORMALIZATION", "TestDefaults",
           "backbone_spec", "check_finite_weights", "checkpoint_sha256", "create_backbone", "list_backbones",
           "load_backbone_weights", "read_checkpoint", "register_backbone", "resnet3d", "slowfast", "tv_transformers",
           "tv_video", "vit_mae"]
#: Model modules reachable as attributes (``lfbtool.models.resnet3d``), imported on first use.
_MODEL_MODULES = ("resnet3d", "slowfast", "tv_transformers", "tv_video", "vit_mae")
_names = _lazy_names("lfbtool.models", {
    "checkpoint": ("check_finite_weights", "checkpoint_sha256", "load_backbone_weights", "read_checkpoint"),
    "factory": ("create_backbone",),
    "lfb_head": ("LFBHead",),
    "lfb_model": ("LFBFeatureModel",),
    "normalization": ("Normalize",),
    "registry": ("backbone_spec", "list_backbones", "register_backbone"),
    "roi": ("RoIFeatureExtractor",),
    "specs": ("BackboneSpec", "ClipDefaults", "MMACTION_NORMALIZATION", "Normalization",
              "TORCHVISION_VIDEO_NORMALIZATION", "TestDefaults"),
})


def __getattr__(name: str) -> object:
    if name in _MODEL_MODULES:
        return import_module(f"lfbtool.models.{name}")
    return _names(name)
