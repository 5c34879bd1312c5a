"""Backbone registry (timm style): builders register themselves with a spec, looked up by name.

This module imports no model module: ``lfbtool.models`` imports the modules that register (as timm's
``models/__init__`` does), so looking a name up never runs into an import cycle. The spec is data
about a backbone — channels, stride, normalization, default clips for extraction and for testing,
its checkpoints' key layout, where its weights come from — so nothing downstream keeps a
string-keyed table of its own. The spec travels with the module (``backbone.spec``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from torch import nn

from lfbtool.errors import LfbError
from lfbtool.models.normalization import Normalization

__all__ = ["BackboneSpec", "ClipDefaults", "TestDefaults", "register_backbone", "list_backbones",
           "backbone_spec", "builder_of"]


@dataclass(frozen=True)
class ClipDefaults:
    """The keyframe clip a detector was trained with (``SampleAVAFrames``): ``clip_len`` x ``frame_interval``."""

    clip_len: int
    frame_interval: int


@dataclass(frozen=True)
class TestDefaults:
    """Sampling and crop settings a recognizer was evaluated with (``recognize`` defaults)."""

    clip_len: int
    frame_interval: int
    num_clips: int
    short_side: int
    crop_size: int


#: MMAction2's AVA SlowOnly-R50 4x16 keyframe clip.
AVA_4X16 = ClipDefaults(clip_len=4, frame_interval=16)
#: MMAction2 SlowOnly-R50 8x8 Kinetics-400 test settings (10 clips of 8 frames, every 8th, 256 -> 224).
MMACTION_K400_TEST = TestDefaults(clip_len=8, frame_interval=8, num_clips=10, short_side=256, crop_size=224)


@dataclass(frozen=True)
class BackboneSpec:
    """What callers need to know about a backbone without building it.

    ``stride`` is the spatial output stride (RoIAlign uses ``1 / stride``); ``temporal_stride`` is how
    many input frames map to one output step; ``min_frames`` the shortest clip it accepts.
    ``checkpoint_prefix`` is the key prefix of the trunk inside a full detector or recognizer
    checkpoint (``backbone.`` for MMAction2); ``ignored_prefixes`` are parts of a classifier
    checkpoint the trunk does not have (``fc.``). ``torchvision_model`` names the torchvision model
    whose published weights (``R3D_18_Weights.*``) the trunk takes; ``mmaction_configs`` lists the
    MMAction2 configs whose checkpoints load into it. ``pathway_channels`` is set for multi-pathway
    trunks (slow first) whose forward returns a tuple of maps; ``channels`` is then their sum.
    ``recognition_strides`` are the stage strides of the trunk's Kinetics recognizers when they differ
    from the detector's (MMAction2's recognizers keep the last stage's stride 2: output stride 32).
    """

    name: str
    channels: int
    stride: int
    normalization: Normalization
    description: str
    checkpoint_prefix: str = "backbone."
    ignored_prefixes: tuple[str, ...] = ()
    temporal_stride: int = 1
    min_frames: int = 1
    extract_clip: ClipDefaults = AVA_4X16
    test_clip: TestDefaults = MMACTION_K400_TEST
    torchvision_model: str | None = None
    mmaction_configs: tuple[str, ...] = ()
    pathway_channels: tuple[int, ...] | None = None
    recognition_strides: tuple[int, ...] | None = None


Builder = Callable[..., nn.Module]
B = TypeVar("B", bound=Builder)

_BUILDERS: dict[str, Builder] = {}
_SPECS: dict[str, BackboneSpec] = {}


def register_backbone(spec: BackboneSpec) -> Callable[[B], B]:
    """Decorator: register ``builder(**overrides) -> nn.Module`` (random weights) under ``spec.name``."""

    def decorate(builder: B) -> B:
        if spec.name in _BUILDERS and _BUILDERS[spec.name] is not builder:
            raise ValueError(f"backbone {spec.name!r} is registered twice")
        _BUILDERS[spec.name] = builder
        _SPECS[spec.name] = spec
        return builder

    return decorate


def list_backbones() -> list[BackboneSpec]:
    """Specs of every registered backbone, sorted by name."""
    return [_SPECS[name] for name in sorted(_SPECS)]


def backbone_spec(name: str) -> BackboneSpec:
    """The spec of ``name`` without building the model; unknown name -> LfbError."""
    if name not in _SPECS:
        raise LfbError(f"unknown backbone {name!r}; known backbones: {', '.join(sorted(_SPECS))}")
    return _SPECS[name]


def builder_of(name: str) -> Builder:
    """The registered builder of ``name`` (the factory calls it)."""
    backbone_spec(name)
    return _BUILDERS[name]
