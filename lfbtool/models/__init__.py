"""Backbones (registry and factory), checkpoint loading, RoI extraction, the LFB head, recognizers.

Importing this package imports the modules whose ``@register_backbone`` decorators fill the
registry (timm's pattern); the registry itself imports no model module.
"""

from lfbtool.models import resnet3d, slowfast, tv_video  # registers the backbones
from lfbtool.models.checkpoint import (
    check_finite_weights,
    checkpoint_sha256,
    load_backbone_weights,
    read_checkpoint,
)
from lfbtool.models.factory import create_backbone
from lfbtool.models.lfb_head import LFBHead
from lfbtool.models.lfb_model import LFBFeatureModel
from lfbtool.models.normalization import (
    MMACTION_NORMALIZATION,
    TORCHVISION_VIDEO_NORMALIZATION,
    Normalization,
    Normalize,
)
from lfbtool.models.registry import (
    BackboneSpec,
    ClipDefaults,
    TestDefaults,
    backbone_spec,
    list_backbones,
    register_backbone,
)
from lfbtool.models.roi import RoIFeatureExtractor

__all__ = [
    "BackboneSpec",
    "ClipDefaults",
    "LFBFeatureModel",
    "LFBHead",
    "MMACTION_NORMALIZATION",
    "Normalization",
    "Normalize",
    "RoIFeatureExtractor",
    "TORCHVISION_VIDEO_NORMALIZATION",
    "TestDefaults",
    "check_finite_weights",
    "backbone_spec",
    "checkpoint_sha256",
    "create_backbone",
    "list_backbones",
    "load_backbone_weights",
    "read_checkpoint",
    "register_backbone",
    "resnet3d",
    "slowfast",
    "tv_video",
]
