"""torchvision's published weights, by name: one resolver and one download path (torchvision's own,
hash-checked, cached in torch hub's directory). Offline, the error names the checkpoint setting."""

from __future__ import annotations

from typing import Any

from torch import Tensor

from lfbtool.errors import LfbError, SettingError

__all__ = ["resolve_weights", "weights_state_dict"]


def resolve_weights(model: str, name: str) -> Any:
    """``R3D_18_Weights.KINETICS400_V1``, ``KINETICS400_V1`` or ``DEFAULT`` -> the weights enum member of
    torchvision model ``model``; weights of another model or an unknown name -> LfbError."""
    import torchvision.models as tvm

    try:
        enum = tvm.get_model_weights(model)
    except (ValueError, KeyError) as error:
        raise LfbError(f"torchvision has no published weights for {model!r}") from error
    try:
        value = tvm.get_weight(name) if "." in name else enum[name]
    except (KeyError, ValueError, AttributeError):
        value = None
    if value is None or not isinstance(value, enum):
        known = ", ".join(str(w) for w in enum)
        raise LfbError(f"{name!r} is not a torchvision weight of {model}; choose from {known}")
    return value


def weights_state_dict(weights: Any, *, setting: str = "checkpoint") -> dict[str, Tensor]:
    """The state dict of a weights enum member, from torch hub's cache or downloaded (hash checked).
    Offline, the error names ``setting``: where the user can give the downloaded file instead."""
    try:
        return weights.get_state_dict(progress=False, check_hash=True)
    except Exception as error:  # noqa: BLE001 - urllib, ssl and hash errors all mean "no usable file"
        raise SettingError(
            setting,
            f"cannot download torchvision weights {weights} (no network?): download the file where there is "
            f"network and pass it with {{0}} ({type(error).__name__}: {error})"
        ) from error
