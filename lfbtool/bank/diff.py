"""``diff_banks``: how two banks differ, read one video at a time (h5py and numpy, no torch).

Keys are compared by name; a key in both banks with the same number of rows pairs its rows in
stored order, and only paired rows enter the box, score and feature figures. Feature figures are
computed in float64 over blocks of rows, so memory stays at one video's rows of each bank.
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from lfbtool.bank.bank_file import BankFile, VideoArrays
from lfbtool.errors import LfbError
from lfbtool.keys import key_text

#: float64 bytes per array converted at a time when comparing features.
BLOCK_BYTES = 8 << 20


@dataclass
class BankDiff:
    """What differs between bank ``a`` and bank ``b`` (keys as ``"video,0902"`` text)."""

    a: str
    b: str
    feature_dim: tuple[int, int]
    dtype: tuple[str, str]
    keys: tuple[int, int] = (0, 0)
    only_in_a: list[str] = field(default_factory=list)
    only_in_b: list[str] = field(default_factory=list)
    row_counts: list[tuple[str, int, int]] = field(default_factory=list)  # key, rows in a, rows in b
    boxes_differ: list[str] = field(default_factory=list)
    box_max_abs: float = 0.0
    scores_differ: list[str] = field(default_factory=list)
    rows_compared: int = 0
    rows_equal: int = 0  # paired rows with bitwise-equal features (after widening to float64)
    feature_max_abs: float = 0.0
    feature_mean_abs: float = 0.0
    cosine_min: float = 1.0
    cosine_mean: float = 1.0
    atol: float = 0.0

    @property
    def comparable(self) -> bool:
        return self.feature_dim[0] == self.feature_dim[1]

    @property
    def identical(self) -> bool:
        """Same keys, rows, boxes and scores, same dtype, features within ``atol`` (0: bitwise)."""
        return (self.comparable and self.dtype[0] == self.dtype[1] and not self.only_in_a and not self.only_in_b
                and not self.row_counts and not self.boxes_differ and not self.scores_differ
                and self.feature_max_abs <= self.atol)

    def as_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["identical"] = self.identical
        data["row_counts"] = [{"key": k, "a": ra, "b": rb} for k, ra, rb in self.row_counts]
        return data


class _Totals:
    """Running feature figures over paired rows."""

    def __init__(self) -> None:
        self.abs_sum = 0.0
        self.elements = 0
        self.cos_sum = 0.0
        self.rows = 0
        self.equal = 0
        self.max_abs = 0.0
        self.cos_min = 1.0

    def add(self, fa: np.ndarray, fb: np.ndarray) -> None:
        step = max(1, BLOCK_BYTES // max(1, fa.shape[1] * 8))
        for start in range(0, len(fa), step):
            a = fa[start:start + step].astype(np.float64)
            b = fb[start:start + step].astype(np.float64)
            diff = np.abs(a - b)
            self.abs_sum += float(diff.sum())
            self.elements += diff.size
            if diff.size:
                self.max_abs = max(self.max_abs, float(diff.max()))
            same = ~diff.any(axis=1)
            self.equal += int(np.count_nonzero(same))
            norm_a, norm_b = np.linalg.norm(a, axis=1), np.linalg.norm(b, axis=1)
            dots = np.einsum("ij,ij->i", a, b)
            # a zero row is at cosine 1 from another zero row, 0 from anything else
            cos = np.where(norm_a * norm_b > 0, dots / np.maximum(norm_a * norm_b, np.finfo(np.float64).tiny),
                           np.where((norm_a == 0) & (norm_b == 0), 1.0, 0.0))
            cos = np.where(same, 1.0, np.clip(cos, -1.0, 1.0))  # equal rows: exactly 1, whatever the rounding
            self.cos_sum += float(cos.sum())
            self.rows += len(cos)
            if len(cos):
                self.cos_min = min(self.cos_min, float(cos.min()))


def _finite(features: np.ndarray, path: Path, video: str, timestamps: np.ndarray, offsets: np.ndarray) -> None:
    bad = ~np.isfinite(features).all(axis=1)
    if bad.any():
        row = int(np.argmax(bad))
        key = int(np.searchsorted(offsets, row, side="right")) - 1
        raise LfbError(f"{path}: key {key_text(video, int(timestamps[key]))} holds NaN/Inf features "
                       "(lfbtool verify names every check); nothing compared")


def _keys_of(bank: BankFile, video: str) -> dict[int, int]:
    """timestamp -> row count of ``video``'s keys, from the in-memory index."""
    k0, k1 = bank.key_range(video)
    counts = np.diff(bank.key_row_offsets[k0:k1 + 1])
    return dict(zip(bank.timestamps[k0:k1].tolist(), counts.tolist(), strict=True))


def _compare_video(video: str, a: BankFile, b: BankFile, result: BankDiff, totals: _Totals) -> None:
    keys_a, keys_b = _keys_of(a, video), _keys_of(b, video)
    result.only_in_a += [key_text(video, t) for t in keys_a if t not in keys_b]
    result.only_in_b += [key_text(video, t) for t in keys_b if t not in keys_a]
    paired = [t for t in keys_a if t in keys_b and keys_a[t] == keys_b[t]]
    result.row_counts += [(key_text(video, t), keys_a[t], keys_b[t]) for t in keys_a
                          if t in keys_b and keys_a[t] != keys_b[t]]
    if not paired:
        return
    va, vb = a.read_video(video, with_boxes=True), b.read_video(video, with_boxes=True)
    _finite(va.features, a.path, video, va.timestamps, va.row_offsets)
    _finite(vb.features, b.path, video, vb.timestamps, vb.row_offsets)
    rows_a, rows_b = _paired_rows(va, paired), _paired_rows(vb, paired)
    for t, (ra, rb) in zip(paired, zip(rows_a, rows_b, strict=True), strict=True):
        box_a, box_b = va.boxes[ra], vb.boxes[rb]
        if not np.array_equal(box_a, box_b, equal_nan=True):
            result.boxes_differ.append(key_text(video, t))
            with np.errstate(invalid="ignore"):
                gap = np.abs(box_a.astype(np.float64) - box_b)
            if np.isnan(gap).all():
                gap = np.array([math.inf])
            result.box_max_abs = max(result.box_max_abs, float(np.nanmax(gap)))
        if not np.array_equal(va.scores[ra], vb.scores[rb], equal_nan=True):
            result.scores_differ.append(key_text(video, t))
    totals.add(_take(va.features, rows_a), _take(vb.features, rows_b))


def _take(features: np.ndarray, rows: list[slice]) -> np.ndarray:
    """The rows of ``rows`` (in order); the array itself when they are all of it."""
    if rows[0].start == 0 and rows[-1].stop == len(features) and sum(r.stop - r.start for r in rows) == len(features):
        return features
    return np.concatenate([features[r] for r in rows])


def _paired_rows(video: VideoArrays, paired: list[int]) -> list[slice]:
    where = {t: i for i, t in enumerate(video.timestamps.tolist())}
    return [slice(int(video.row_offsets[where[t]]), int(video.row_offsets[where[t] + 1])) for t in paired]


def diff_banks(a: str | os.PathLike, b: str | os.PathLike, *, atol: float = 0.0) -> BankDiff:
    """Compare two bank files; LfbError (exit 2) for a file that is not a readable bank."""
    if not (atol >= 0 and math.isfinite(atol)):
        raise LfbError(f"--atol must be a finite number >= 0, got {atol}")
    first = BankFile(a)
    try:
        second = BankFile(b)
    except BaseException:
        first.close()
        raise
    try:
        result = BankDiff(str(a), str(b), (first.feature_dim, second.feature_dim),
                          (str(first.attrs["dtype"]), str(second.attrs["dtype"])),
                          keys=(len(first.timestamps), len(second.timestamps)), atol=float(atol))
        totals = _Totals()
        if not result.comparable:
            return result  # features of another size: nothing else is worth comparing
        for video in sorted(set(first.videos) | set(second.videos)):
            if video not in second.video_index:
                result.only_in_a += [key_text(video, t) for t in _keys_of(first, video)]
            elif video not in first.video_index:
                result.only_in_b += [key_text(video, t) for t in _keys_of(second, video)]
            else:
                _compare_video(video, first, second, result, totals)
    finally:
        first.close()
        second.close()
    result.rows_compared, result.rows_equal = totals.rows, totals.equal
    result.feature_max_abs = totals.max_abs
    result.feature_mean_abs = totals.abs_sum / totals.elements if totals.elements else 0.0
    result.cosine_min = totals.cos_min
    result.cosine_mean = totals.cos_sum / totals.rows if totals.rows else 1.0
    return result


__all__ = ["BankDiff", "diff_banks"]
