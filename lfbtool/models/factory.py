"""One entry point that builds a backbone by name (timm's ``create_model``): random weights, or
torchvision's published weights named as data on the spec."""

from __future__ import annotations

from typing import Any

from torch import nn

from lfbtool.errors import LfbError
from lfbtool.models.checkpoint import load_backbone_weights
from lfbtool.models.registry import bank_spec, builder_of
from lfbtool.models.weights import resolve_weights, weights_state_dict

__all__ = ["create_backbone"]


def create_backbone(name: str, *, weights: str | None = None, **options: Any) -> nn.Module:
    """Build backbone ``name`` in eval mode; ``weights`` names torchvision weights of its spec's
    ``torchvision_model`` (e.g. ``R3D_18_Weights.KINETICS400_V1`` or ``DEFAULT``). ``options`` go to the
    builder: ``spatial_strides`` (ResNet family; recognizers: ``spec.recognition_strides``),
    ``mean_pooling`` (VideoMAE recognizers). A spec with ``no_bank`` has no feature-map trunk: LfbError."""
    spec = bank_spec(name)
    model = builder_of(name)(**{key: value for key, value in options.items() if value is not None})
    model.spec = spec
    if weights is not None:
        if spec.torchvision_model is None:
            raise LfbError(f"{name} has no torchvision weights ({weights!r}); pass an MMAction2 --checkpoint")
        member = resolve_weights(spec.torchvision_model, weights)
        load_backbone_weights(model, weights_state_dict(member), source=str(member))
    return model.eval()
