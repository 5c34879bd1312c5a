"""Backbone registry (timm style): specs looked up by name, builders attached by the model modules.

The specs are data (:mod:`lfbtool.models.specs`) and this module imports no model module and no
torch, so listing backbones or reading one's defaults is cheap (``lfbtool backbones``, the CLI's
option defaults). The model modules attach a builder to each spec with ``@register_backbone(SPEC)``;
:func:`builder_of` imports them the first time a builder is asked for, so looking a name up never
runs into an import cycle. The spec travels with the built module (``backbone.spec``).
"""

from __future__ import annotations

from collections.abc import Callable
from importlib import import_module
from typing import TYPE_CHECKING, TypeVar

from lfbtool.choices import did_you_mean
from lfbtool.errors import LfbError
from lfbtool.models.specs import (
    AVA_4X16,
    BUILTIN_SPECS,
    MMACTION_K400_TEST,
    BackboneSpec,
    ClipDefaults,
    TestDefaults,
)

if TYPE_CHECKING:
    from torch import nn

__all__ = ["AVA_4X16", "BackboneSpec", "ClipDefaults", "MMACTION_K400_TEST", "TestDefaults", "register_backbone",
           "list_backbones", "backbone_spec", "bank_spec", "builder_of"]

Builder = Callable[..., "nn.Module"]
B = TypeVar("B", bound=Builder)

#: The modules whose ``@register_backbone`` decorators attach the builders of :data:`BUILTIN_SPECS`.
BUILDER_MODULES = ("lfbtool.models.resnet3d", "lfbtool.models.slowfast", "lfbtool.models.tv_video",
                   "lfbtool.models.tv_transformers", "lfbtool.models.vit_mae")

_BUILDERS: dict[str, Builder] = {}
_SPECS: dict[str, BackboneSpec] = {spec.name: spec for spec in BUILTIN_SPECS}


def register_backbone(spec: BackboneSpec) -> Callable[[B], B]:
    """Decorator: register ``builder(**overrides) -> nn.Module`` (random weights) under ``spec.name``;
    a new spec is added to the registry, a built-in one must be the same object."""

    def decorate(builder: B) -> B:
        if spec.name in _BUILDERS and _BUILDERS[spec.name] is not builder:
            raise ValueError(f"backbone {spec.name!r} is registered twice")
        if _SPECS.get(spec.name, spec) != spec:
            raise ValueError(f"backbone {spec.name!r} is registered with another spec than its own")
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
        raise LfbError(f"unknown backbone {name!r}{did_you_mean(name, _SPECS)} (known backbones: "
                       f"{', '.join(sorted(_SPECS))})")
    return _SPECS[name]


def bank_spec(name: str) -> BackboneSpec:
    """The spec of a backbone that yields a feature map for banks; one with ``no_bank`` -> LfbError."""
    spec = backbone_spec(name)
    if spec.no_bank is not None:
        raise LfbError(f"{name} cannot build a feature bank: {spec.no_bank}")
    return spec


def builder_of(name: str) -> Builder:
    """The registered builder of ``name`` (the factory calls it); imports the model modules once."""
    backbone_spec(name)
    if name not in _BUILDERS:
        for module in BUILDER_MODULES:
            import_module(module)
    if name not in _BUILDERS:
        raise LookupError(f"backbone {name!r} has a spec but no builder in {', '.join(BUILDER_MODULES)}")
    return _BUILDERS[name]
