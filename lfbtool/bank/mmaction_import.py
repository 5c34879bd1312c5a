"""Convert an MMAction2 LFB pickle (``lfb_{mode}.pkl``) into a bank file, without running pickled code.

MMAction2 writes ``{video_id: {timestamp: [tensor[C], ...]}}`` (``LFBInferHead``) and reads tensors
``[n, C]`` too; both are accepted, as is a single ``[C]`` tensor. The pickle holds no boxes or
scores, so the bank gets NaN for both ("unknown"). Rows go through :class:`BankWriter`, the one
writer of the format, in sorted key order. The pickle is read without torch
(:mod:`lfbtool.bank.tensor_archive`); only a legacy file from before torch 1.6 (not a zip) is read
with torch, through the same restricted unpickler.
"""

from __future__ import annotations

import json
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import numpy as np

from lfbtool._io.atomic import check_output_path
from lfbtool._io.lock import remove_dead_temporaries
from lfbtool.bank.format import all_finite
from lfbtool.bank.tensor_archive import StoredTensor, load_tensor_archive
from lfbtool.bank.writer import BankWriter
from lfbtool.errors import LfbError
from lfbtool.keys import key_text, timestamp_problem
from lfbtool.runs.naming import check_mode

_DTYPES = {"torch.float16": "float16", "torch.float32": "float32"}


@dataclass(frozen=True)
class ImportSummary:
    path: Path
    mode: str
    videos: int
    keyframes: int
    rows: int
    feature_dim: int
    dtype: str


def mode_from_name(path: Path) -> str | None:
    """``lfb_train.pkl`` -> ``"train"`` (MMAction2's naming); None when the name does not say."""
    match = re.fullmatch(r"lfb_(.+)\.pkl", path.name)
    return match.group(1) if match else None


def _legacy_load(path: Path) -> Any:
    """A pre-1.6 (not zip) ``torch.save`` file, read with torch; tensors become :class:`StoredTensor`."""
    import torch

    from lfbtool._io.safe_pickle import torch_load

    def convert(value: Any) -> Any:
        if isinstance(value, torch.Tensor):
            numeric = value.dtype in (torch.float16, torch.float32, torch.float64)
            return StoredTensor(str(value.dtype), tuple(value.shape), value.detach().numpy() if numeric else None)
        if isinstance(value, dict):
            return {k: convert(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return type(value)(convert(v) for v in value)
        return value

    return convert(torch_load(path, allow_unknown_classes=False))


def load_mmaction_pkl(path: str | Path) -> Any:
    """Tensors and plain containers only, read by the bounded restricted loader (no code, no pickle bombs)."""
    path = Path(path)
    if not path.is_file():
        raise LfbError(f"{path}: no such file")
    try:
        return load_tensor_archive(path) if zipfile.is_zipfile(path) else _legacy_load(path)
    except LfbError as error:
        text = str(error)
        found = re.search(r"the pickle references (\S+), which is not plain data", text)
        if found:
            raise LfbError(
                f"{path}: refused to load: this pickle would run code (it calls {found.group(1)}); an MMAction2 "
                "bank holds only tensors, so it is not one"
            ) from error
        if "refused to load" in text:
            raise
        raise LfbError(f"{path}: cannot read as an MMAction2 bank (not a torch.save pickle)") from error


class _Checker:
    """Turns each second's value into a numpy ``[n, C]`` array, holding C and dtype consistent."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.dim: int | None = None
        self.dtype: str | None = None

    def rows(self, video: str, ts: int, value: Any) -> np.ndarray:
        key = key_text(video, ts)
        if isinstance(value, StoredTensor):
            tensors = [value]
            if value.dim() not in (1, 2):
                self._fail(key, f"a tensor of shape {value.shape}; expected [n, C] or [C]")
        elif isinstance(value, (list, tuple)):
            tensors = list(value)
            if not all(isinstance(t, StoredTensor) and t.dim() == 1 for t in tensors):
                self._fail(key, "a list that is not of 1-D feature tensors [C]")
            if len({t.shape[0] for t in tensors}) > 1:
                self._fail(key, "feature vectors of different lengths")
        else:
            self._fail(key, f"a {type(value).__name__}; expected a tensor [n, C] or a list of tensors [C]")
        for tensor in tensors:
            self._dtype(key, tensor.dtype)
        if not tensors:  # an empty list: no features at this second
            return np.zeros((0, self.dim or 0), dtype=np.float32)
        arrays = [t.array for t in tensors]  # float16/float32: numpy has both
        if isinstance(value, StoredTensor):
            stacked = arrays[0] if value.dim() == 2 else arrays[0].reshape(1, -1)
        else:
            stacked = np.stack(arrays)
        if stacked.shape[1] == 0:
            self._fail(key, "features of length 0 (a bank's features have at least one value)")
        if self.dim is None:
            self.dim = int(stacked.shape[1])
        elif stacked.shape[1] != self.dim:
            self._fail(key, f"features of length {stacked.shape[1]}, other keys have {self.dim}")
        if not all_finite(stacked):
            row = int(np.argmin(np.isfinite(stacked).all(axis=1)))
            self._fail(key, f"NaN or Inf in feature vector {row}; verify, merge and FeatureBank refuse such rows")
        return stacked

    def _dtype(self, key: str, dtype: str) -> None:
        if dtype not in _DTYPES:
            self._fail(key, f"dtype {dtype}; a bank stores float16 or float32")
        if self.dtype is None:
            self.dtype = dtype
        elif dtype != self.dtype:
            self._fail(key, f"dtype {dtype}, other keys have {self.dtype}")

    def _fail(self, key: str, what: str) -> NoReturn:
        raise LfbError(f"{self.path}: key {key} holds {what}")


def _timestamp(path: Path, video: str, ts: Any) -> int:
    if isinstance(ts, bool) or not isinstance(ts, (int, str)) or (isinstance(ts, str) and not ts.isdigit()):
        raise LfbError(f"{path}: video {video!r} has timestamp {ts!r}; expected whole seconds (int)")
    problem = timestamp_problem(int(ts))
    if problem:
        raise LfbError(f"{path}: video {video!r}: {problem}")
    return int(ts)


def import_mmaction_pkl(
    pkl_path: str | Path, out: str | Path, *, mode: str | None = None, overwrite: bool = False
) -> ImportSummary:
    """Read ``pkl_path`` safely, validate it whole, then write ``out`` through :class:`BankWriter`."""
    pkl_path, out = Path(pkl_path), Path(out)
    if not pkl_path.is_file():
        raise LfbError(f"{pkl_path}: no such file")
    if mode is not None:
        check_mode(mode)
    else:
        mode = mode_from_name(pkl_path)
        if not mode:
            raise LfbError(f"{pkl_path}: cannot tell the mode from the file name (not lfb_<mode>.pkl); pass --mode")
        try:
            check_mode(mode)
        except LfbError as error:
            raise LfbError(f"{pkl_path}: the file name gives mode {mode!r}, not a plain name ({error}); "
                           "pass --mode") from None
    check_output_path(out, overwrite=overwrite)
    remove_dead_temporaries(list(out.parent.glob(f"{out.name}.tmp-*")))
    lfb = load_mmaction_pkl(pkl_path)
    if not isinstance(lfb, dict) or not all(isinstance(v, str) for v in lfb):
        raise LfbError(f"{pkl_path}: not an MMAction2 bank (expected a dict {{video_id: {{timestamp: features}}}})")
    checker = _Checker(pkl_path)
    keys: list[tuple[str, int, np.ndarray]] = []
    for video in sorted(lfb):
        seconds = lfb[video]
        if not isinstance(seconds, dict):
            raise LfbError(f"{pkl_path}: video {video!r} holds a {type(seconds).__name__}, expected {{timestamp: features}}")
        by_time = {}
        for ts, value in seconds.items():
            second = _timestamp(pkl_path, video, ts)
            if second in by_time:
                raise LfbError(f"{pkl_path}: key {key_text(video, second)} appears twice")
            by_time[second] = value
        for second in sorted(by_time):
            keys.append((video, second, checker.rows(video, second, by_time[second])))
    if checker.dim is None or checker.dtype is None:
        raise LfbError(f"{pkl_path}: the bank holds no features")
    dim, dtype = checker.dim, _DTYPES[checker.dtype]
    config = json.dumps({"source": "mmaction2-pkl", "imported_from": str(pkl_path)})
    rows = 0
    with BankWriter(out, feature_dim=dim, dtype=dtype, mode=mode, config_json=config, replace=overwrite) as writer:
        for video, second, features in keys:
            n = features.shape[0]
            features = features.reshape(n, dim)
            writer.append(video, second, features, np.full((n, 4), np.nan, np.float32), np.full(n, np.nan, np.float32))
            rows += n
    return ImportSummary(out, mode, len(lfb), len(keys), rows, dim, dtype)
