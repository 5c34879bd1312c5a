"""Checkpoint reading (plain / MMCV / MMEngine layouts) and strict backbone loading.

Files are read with :func:`lfbtool._io.safe_pickle.torch_load`: pickled code never runs, and classes of
MMEngine's metadata (``message_hub``, ``meta``) become inert placeholders; only the tensors matter.
A checkpoint either fits the backbone completely or the user gets one error that lists every
missing, unexpected and mis-shaped key, so a wrong file never yields a silently random feature bank.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from lfbtool._io.hashing import file_sha256
from lfbtool._io.safe_pickle import torch_load
from lfbtool.errors import LfbError

__all__ = ["read_checkpoint", "load_strict", "load_backbone_weights", "check_finite_weights", "checkpoint_sha256",
           "derived_keys"]

_STATE_DICT_KEYS = ("state_dict", "model", "module")
_SHOWN = 8  # keys listed per category before "(+N more)"


def _find_state_dict(obj: Any) -> Any:
    """The tensor mapping inside the known layouts: plain, {"state_dict"}, MMEngine, {"model"}."""
    if isinstance(obj, Mapping):
        for key in _STATE_DICT_KEYS:
            inner = obj.get(key)
            if isinstance(inner, Mapping) and any(isinstance(v, Tensor) for v in inner.values()):
                return inner
    return obj


def _strip_module(key: str) -> str:
    """DataParallel/DDP checkpoints prefix every key with ``module.``."""
    while key.startswith("module."):
        key = key[len("module.") :]
    return key


def read_checkpoint(path: str | os.PathLike[str]) -> dict[str, Tensor]:
    """Read a checkpoint file into a flat ``{key: tensor}`` state_dict on CPU, ``module.`` stripped."""
    source = os.fspath(path)
    obj = torch_load(source, allow_unknown_classes=True)
    state = _find_state_dict(obj)
    if not isinstance(state, Mapping) or not state:
        raise LfbError(
            f"{source}: not a checkpoint: expected a state_dict or a dict with 'state_dict' or 'model', "
            f"found {type(obj).__name__}"
        )
    result: dict[str, Tensor] = {}
    for key, value in state.items():
        if not isinstance(key, str) or not isinstance(value, Tensor):
            shown = list(state)[:5]
            raise LfbError(
                f"{source}: not a checkpoint: key {key!r} holds {type(value).__name__}, not a tensor "
                f"(top-level keys: {shown})"
            )
        result[_strip_module(key)] = value
    return result


def _listing(items: list[str], sep: str = ", ") -> str:
    """The first few items and a count of the rest: one error line stays readable."""
    more = f"{sep}... (+{len(items) - _SHOWN} more)" if len(items) > _SHOWN else ""
    return sep.join(items[:_SHOWN]) + more


def _select(state_dict: Mapping[str, Tensor], prefix: str, ignored: tuple[str, ...]) -> dict[str, Tensor]:
    """The backbone's part: the ``prefix`` (else ``backbone.``) sub-dict when present, minus ``ignored``.

    ``backbone.`` is tried for every backbone so detector/recognizer checkpoints of torchvision trunks
    (whose own prefix is empty) load too.
    """
    selected = dict(state_dict)
    for candidate in dict.fromkeys((prefix, "backbone.")):
        if candidate and any(key.startswith(candidate) for key in selected):
            selected = {k[len(candidate) :]: v for k, v in selected.items() if k.startswith(candidate)}
            break
    return {key: value for key, value in selected.items() if not key.startswith(ignored)}


def check_finite_weights(state_dict: Mapping[str, Tensor], *, source: str) -> None:
    """Refuse NaN/Inf floating tensors and negative BatchNorm ``running_var``: they give NaN features.

    A broken checkpoint would otherwise fill a bank (or scores) with NaN silently; the first
    offending key is named with the file.
    """
    for key, value in state_dict.items():
        if not isinstance(value, Tensor) or not value.is_floating_point() or value.numel() == 0:
            continue
        if not bool(torch.isfinite(value).all()):
            bad = "NaN" if bool(torch.isnan(value).any()) else "Inf"
            raise LfbError(f"{source}: tensor {key} holds {bad} values; the checkpoint is broken, use another file")
        if key.endswith("running_var") and bool((value < 0).any()):
            raise LfbError(
                f"{source}: tensor {key} (BatchNorm running variance) holds negative values; "
                "the checkpoint is broken, use another file"
            )


def derived_keys(module: nn.Module) -> set[str]:
    """State keys that are fixed functions of the architecture (a submodule lists them in its
    ``derived_buffers``, e.g. VideoMAE's sinusoid ``pos_embed``): a checkpoint may leave them out."""
    return {f"{name}.{key}" if name else key for name, sub in module.named_modules()
            for key in getattr(sub, "derived_buffers", ())}


def load_strict(module: nn.Module, weights: Mapping[str, Tensor], *, source: str, target: str) -> None:
    """Load ``weights`` into ``module`` strictly: one LfbError lists every missing, unexpected and
    mis-shaped key, another names a non-finite tensor. BatchNorm ``num_batches_tracked`` (older
    checkpoints; unused in eval) and :func:`derived_keys` may be absent: the module keeps its own."""
    expected = module.state_dict()
    derived = derived_keys(module)
    missing = [k for k in expected if k not in weights and not k.endswith("num_batches_tracked") and k not in derived]
    unexpected = [k for k in weights if k not in expected]
    mismatched = [
        f"{k}: checkpoint {tuple(v.shape)} vs model {tuple(expected[k].shape)}"
        for k, v in weights.items()
        if k in expected and tuple(v.shape) != tuple(expected[k].shape)
    ]
    problems = []
    if missing:
        problems.append(f"missing keys [{_listing(missing)}]")
    if unexpected:
        problems.append(f"unexpected keys [{_listing(unexpected)}]")
    if mismatched:
        problems.append("shape mismatch " + _listing(mismatched, "; "))
    if problems:
        raise LfbError(f"{source}: checkpoint does not fit {target}: " + "; ".join(problems))
    check_finite_weights(weights, source=source)
    complete = {k: weights.get(k, expected[k]) for k in expected}
    with torch.no_grad():
        module.load_state_dict(complete, strict=True)


def load_backbone_weights(backbone: nn.Module, state_dict: Mapping[str, Tensor], *, source: str) -> None:
    """Load ``state_dict`` (full detector or backbone-only) into ``backbone`` strictly.

    Takes the ``spec.checkpoint_prefix`` (else ``backbone.``) sub-dict when present, ignoring
    ``roi_head``/``cls_head``; then drops ``spec.ignored_prefixes`` (torchvision ``fc.``).
    """
    spec = backbone.spec
    stripped = {_strip_module(key): value for key, value in state_dict.items()}
    weights = _select(stripped, spec.checkpoint_prefix, tuple(spec.ignored_prefixes))
    load_strict(backbone, weights, source=source, target=spec.name)


def checkpoint_sha256(path: str | os.PathLike[str]) -> str:
    """sha256 hex digest of the file, read in 1 MiB chunks (checkpoints are hundreds of MB)."""
    try:
        return file_sha256(Path(path))
    except FileNotFoundError:
        raise LfbError(f"{os.fspath(path)}: no such file") from None
    except IsADirectoryError:
        raise LfbError(f"{os.fspath(path)}: is a directory, expected a checkpoint file") from None
