"""One open bank file, read with h5py and numpy only (no torch): the handle, root attributes and
the in-memory index, checked on open. :class:`~lfbtool.bank.reader.FeatureBank` reads through it;
``inspect`` and ``export --format npz-dir`` use it directly, so they start without torch.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, NamedTuple

import h5py
import numpy as np

from lfbtool.bank import format as fmt
from lfbtool.errors import LfbError

__all__ = ["BankFile", "BankKeyError", "VideoArrays"]

# HDF5's chunk cache only helps when chunks are re-read; window reads are random and the rows of a
# window are contiguous, so reading the selection straight from the file is faster and keeps RSS low.
_CHUNK_CACHE_BYTES = 0


class BankKeyError(LfbError, KeyError):
    """An unknown video or key: a ``KeyError`` for code, one plain line for the CLI."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class VideoArrays(NamedTuple):
    """All rows of one video as numpy arrays, read with one slice per dataset."""

    timestamps: np.ndarray  # [k] int64
    row_offsets: np.ndarray  # [k + 1] int64 from 0: rows of key i are [row_offsets[i], row_offsets[i + 1])
    features: np.ndarray  # [n, C] stored dtype
    boxes: np.ndarray | None  # [n, 4] float32 when asked for
    scores: np.ndarray | None  # [n] float32 when asked for


class BankFile:
    """One open bank file: its h5py handle, root attributes and in-memory index, checked on open."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self.h5 = fmt.open_bank(self.path, chunk_cache_bytes=_CHUNK_CACHE_BYTES)
        try:
            index = fmt.read_checked_index(self.h5, str(self.path))
        except BaseException:
            self.h5.close()
            raise
        self.index = index
        self.attrs: dict[str, Any] = index.attrs
        self.feature_dim = index.feature_dim
        self.videos: list[str] = index.videos
        self.video_key_offsets = index.video_key_offsets
        self.timestamps = index.timestamps
        self.key_row_offsets = index.key_row_offsets
        self.features, self.boxes, self.scores = (self.h5[name] for name in fmt.ROW_DATASETS)
        self.video_index = {video: i for i, video in enumerate(self.videos)}

    def rows(self, data: h5py.Dataset, start: int, stop: int) -> np.ndarray:
        """Rows of /features, /boxes or /scores; a damaged chunk is an LfbError, never wrong numbers."""
        return fmt.read_rows(data, start, stop, str(self.path))

    def feature_rows(self, start: int, stop: int) -> np.ndarray:
        """Rows of /features, refused (one LfbError naming the key) where one holds NaN or Inf, as verify
        refuses them: a reader never hands out what verify calls a damaged bank."""
        features = self.rows(self.features, start, stop)
        fmt.refuse_non_finite(features, start, self.index)
        return features

    def key_range(self, video_id: str) -> tuple[int, int]:
        v = self.video_index[video_id]
        return int(self.video_key_offsets[v]), int(self.video_key_offsets[v + 1])

    def read_video(self, video_id: str, *, with_boxes: bool = False) -> VideoArrays:
        """Every row of ``video_id`` (which must be in this file), offsets counted from its first row."""
        k0, k1 = self.key_range(video_id)
        offsets = self.key_row_offsets[k0 : k1 + 1]
        r0, r1 = int(offsets[0]), int(offsets[-1])
        boxes = self.rows(self.boxes, r0, r1) if with_boxes else None
        scores = self.rows(self.scores, r0, r1) if with_boxes else None
        return VideoArrays(self.timestamps[k0:k1].copy(), offsets - r0, self.feature_rows(r0, r1), boxes, scores)

    def close(self) -> None:
        if self.h5.id.valid:
            self.h5.close()

    def __enter__(self) -> BankFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
