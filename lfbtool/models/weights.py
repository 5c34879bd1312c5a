"""torchvision's published weights, by name: one resolver and one download path (torchvision's own,
hash-checked, cached in torch hub's directory). Offline, the error names the checkpoint setting.

A file already in the cache is not hash-checked again by torch hub, so it is read with torch's
``weights_only`` unpickler (tensors and plain containers only): a planted file is refused, never run.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from torch import Tensor

from lfbtool.errors import LfbError, SettingError

__all__ = ["cached_weights_file", "resolve_weights", "weights_state_dict"]


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


def cached_weights_file(weights: Any) -> Path:
    """Where torch hub keeps (or will keep) the file of a weights enum member."""
    import torch.hub

    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(urlparse(weights.url).path)


def weights_state_dict(weights: Any, *, setting: str = "checkpoint") -> dict[str, Tensor]:
    """The state dict of a weights enum member, from torch hub's cache or downloaded (hash checked),
    read with ``weights_only=True``. Offline, the error names ``setting``: where the user can give the
    downloaded file instead."""
    cached = cached_weights_file(weights)
    try:
        return weights.get_state_dict(progress=False, check_hash=True, weights_only=True, map_location="cpu")
    except pickle.UnpicklingError as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise LfbError(f"{cached}: not a plain torchvision weights file, refused ({first}); "
                       f"delete it to download {weights} again") from error
    except Exception as error:  # noqa: BLE001 - urllib, ssl and hash errors all mean "no usable file"
        raise SettingError(
            setting,
            f"cannot download torchvision weights {weights} (no network?): download the file where there is "
            f"network and pass it with {{0}} ({type(error).__name__}: {error})"
        ) from error
