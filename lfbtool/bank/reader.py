"""FeatureBank: read-only access to one or more banks, and MMAction2's long-term window sampling.

The object keeps only its paths when pickled and (re)opens the files in whichever process uses it,
so one instance can be handed to DataLoader workers (fork or spawn). Opening reads the small index
(videos, offsets, timestamps) into memory; feature rows stay on disk and are read per request.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch

from lfbtool.bank.bank_file import BankFile, BankKeyError
from lfbtool.errors import LfbError
from lfbtool.keys import key_text, timestamp_problem

PathLike = str | os.PathLike

__all__ = ["BankEntry", "BankKeyError", "FeatureBank", "VideoRows", "parse_key", "whole_seconds"]


class BankEntry(NamedTuple):
    """The rows of one key: features in the stored dtype, boxes and scores as float32."""

    features: torch.Tensor  # [n, C]
    boxes: torch.Tensor  # [n, 4] normalized x1, y1, x2, y2
    scores: torch.Tensor  # [n]; NaN where boxes came from annotations or are unknown


class VideoRows(NamedTuple):
    """All rows of one video, read with one slice per dataset."""

    timestamps: np.ndarray  # [k] int64
    row_offsets: np.ndarray  # [k + 1] int64, rows of key i are [row_offsets[i], row_offsets[i + 1])
    features: torch.Tensor  # [n, C] stored dtype
    boxes: torch.Tensor | None  # [n, 4] float32 when asked for
    scores: torch.Tensor | None  # [n] float32 when asked for


class _Opened:
    """The per-process state of a FeatureBank: open files and a video -> file lookup."""

    def __init__(self, paths: Sequence[Path]) -> None:
        self.files: list[BankFile] = []
        self.owner: dict[str, BankFile] = {}
        try:
            for path in paths:
                self.files.append(BankFile(path))
            self._check_compatible()
            for bank in self.files:
                for video in bank.videos:
                    if video in self.owner:
                        raise LfbError(_duplicate_message(self.owner[video], bank, video))
                    self.owner[video] = bank
        except BaseException:
            self.close()
            raise
        self.videos = sorted(self.owner)
        self.num_keys = sum(len(b.timestamps) for b in self.files)

    def _check_compatible(self) -> None:
        first = self.files[0]
        for other in self.files[1:]:
            for name in ("feature_dim", "dtype"):
                if other.attrs[name] != first.attrs[name]:
                    raise LfbError(
                        f"{other.path}: {name} {other.attrs[name]!r} differs from {first.path} "
                        f"({first.attrs[name]!r}); banks read together must match"
                    )

    def close(self) -> None:
        for bank in self.files:
            bank.close()


def _duplicate_message(first: BankFile, second: BankFile, video: str) -> str:
    a, b = first.key_range(video), second.key_range(video)
    shared = np.intersect1d(first.timestamps[a[0] : a[1]], second.timestamps[b[0] : b[1]])
    if len(shared):
        what = f"key {key_text(video, int(shared[0]))} is"
    else:
        what = f"video {video!r} is"
    return f"{second.path}: {what} also in {first.path}; each video must be in exactly one bank"


def whole_seconds(timestamp: Any, key: Any = None) -> int:
    """A timestamp as int: an int, a numpy integer, a float equal to an int (``902.0``) or digits
    (``"0902"``). Anything else (``902.5``, NaN, True, None) is a :class:`BankKeyError` naming it, never
    a silent ``int()`` that would turn 902.5 into 902's rows."""
    seconds = None
    if isinstance(timestamp, (int, np.integer)) and not isinstance(timestamp, (bool, np.bool_)):
        seconds = int(timestamp)
    elif isinstance(timestamp, (float, np.floating)) and float(timestamp).is_integer():
        seconds = int(timestamp)
    elif isinstance(timestamp, str) and re.fullmatch(r"\s*[+-]?\d+\s*", timestamp):
        seconds = int(timestamp)
    what = f"{key!r} is not a bank key" if key is not None else f"timestamp {timestamp!r} is not a keyframe time"
    if seconds is None:
        raise BankKeyError(f"{what}; timestamps are whole seconds (an int, or a float equal to one)")
    if timestamp_problem(seconds):
        raise BankKeyError(f"{what}; {timestamp_problem(seconds)}")
    return seconds


def parse_key(key: Any) -> tuple[str, int]:
    """``("vid", 902)`` or ``"vid,0902"`` -> ``("vid", 902)``; anything else is a KeyError naming it."""
    if isinstance(key, tuple) and len(key) == 2:
        video_id, timestamp = key
    elif isinstance(key, str) and "," in key:
        video_id, timestamp = key.rsplit(",", 1)
    else:
        raise BankKeyError(f"{key!r} is not a bank key; use bank['video_id,0902'] or bank['video_id', 902]")
    return str(video_id), whole_seconds(timestamp, key)


class FeatureBank:
    """Read-only view of one or more bank files (e.g. train + val), safe to send to DataLoader workers.

    ``bank[video_id, ts]`` / ``bank["video_id,0902"]`` give the features ``[n, C]`` of a keyframe in
    the stored dtype (float16 for default banks); :meth:`sample_window` gives MMAction2's long-term
    features. Each video lives in exactly one file; ``len(bank)`` counts keys (keyframes).
    """

    def __init__(self, paths: PathLike | bytes | Sequence[PathLike | bytes]) -> None:
        if isinstance(paths, (str, bytes, os.PathLike)) or not isinstance(paths, Iterable):
            paths = [paths]
        self._paths = tuple(_as_path(p) for p in paths)
        if not self._paths:
            raise LfbError("FeatureBank needs at least one bank file")
        self._pid = -1
        self._opened: _Opened | None = None
        self._state()  # fail now, in the process that named the files, not in a worker

    # -- process-local state -------------------------------------------------------------------
    def _state(self) -> _Opened:
        """The open files of this process; a forked or unpickled copy opens its own handles."""
        if self._opened is None or self._pid != os.getpid():
            # An inherited handle belongs to the parent: drop it unused (h5py handles are not fork-safe).
            self._opened = _Opened(self._paths)
            self._pid = os.getpid()
        return self._opened

    def __getstate__(self) -> dict[str, Any]:
        return {"paths": self._paths}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self._paths = tuple(state["paths"])
        self._pid = -1
        self._opened = None

    def close(self) -> None:
        """Close this process's handles; the next access reopens them."""
        if self._opened is not None and self._pid == os.getpid():
            self._opened.close()
        self._opened = None

    def __enter__(self) -> FeatureBank:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- description ---------------------------------------------------------------------------
    @property
    def paths(self) -> tuple[Path, ...]:
        return self._paths

    @property
    def feature_dim(self) -> int:
        return self._state().files[0].feature_dim

    @property
    def dtype(self) -> torch.dtype:
        """The stored feature dtype (``bank[...]`` returns it; windows are float32)."""
        return getattr(torch, self._state().files[0].attrs["dtype"])

    @property
    def attrs(self) -> list[dict[str, Any]]:
        """Root attributes of each file, in the order of :attr:`paths`."""
        return [dict(b.attrs) for b in self._state().files]

    @property
    def videos(self) -> list[str]:
        """All video ids, sorted."""
        return list(self._state().videos)

    def timestamps(self, video_id: str) -> np.ndarray:
        """The keyframe timestamps (s) of one video, increasing (int64 copy)."""
        bank, k0, k1 = self._video(video_id)
        return bank.timestamps[k0:k1].copy()

    def __len__(self) -> int:
        return self._state().num_keys

    def __iter__(self) -> Iterator[tuple[str, int]]:
        """Keys ``(video_id, timestamp)`` in sorted order."""
        state = self._state()
        for video in state.videos:
            bank = state.owner[video]
            k0, k1 = bank.key_range(video)
            for ts in bank.timestamps[k0:k1].tolist():
                yield video, ts

    def __contains__(self, key: object) -> bool:
        """``(vid, ts)`` or ``"vid,0902"`` test a key; a plain ``"vid"`` (no comma) tests a video."""
        if isinstance(key, str) and "," not in key:
            return key in self._state().owner
        try:
            self._locate(*parse_key(key))
        except KeyError:
            return False
        return True

    # -- rows ----------------------------------------------------------------------------------
    def _video(self, video_id: str) -> tuple[BankFile, int, int]:
        bank = self._state().owner.get(video_id)
        if bank is None:
            raise BankKeyError(f"video {video_id!r} is not in bank {_names(self._paths)}")
        return (bank, *bank.key_range(video_id))

    def _locate(self, video_id: str, timestamp: int) -> tuple[BankFile, int]:
        bank = self._state().owner.get(video_id)
        if bank is None:
            raise BankKeyError(
                f"{key_text(video_id, timestamp)}: video {video_id!r} is not in bank {_names(self._paths)}"
            )
        k0, k1 = bank.key_range(video_id)
        k = k0 + int(np.searchsorted(bank.timestamps[k0:k1], timestamp))
        if k >= k1 or bank.timestamps[k] != timestamp:
            raise BankKeyError(f"{key_text(video_id, timestamp)} is not in bank {bank.path}")
        return bank, k

    def get(self, video_id: str, timestamp: int, *, with_boxes: bool = False) -> torch.Tensor | BankEntry:
        """Features ``[n, C]`` of one key, or a :class:`BankEntry` with its boxes and scores."""
        bank, k = self._locate(str(video_id), whole_seconds(timestamp))
        r0, r1 = int(bank.key_row_offsets[k]), int(bank.key_row_offsets[k + 1])
        features = torch.from_numpy(bank.feature_rows(r0, r1))
        if not with_boxes:
            return features
        return BankEntry(features, torch.from_numpy(bank.rows(bank.boxes, r0, r1)),
                          torch.from_numpy(bank.rows(bank.scores, r0, r1)))

    def __getitem__(self, key: tuple[str, int] | str) -> torch.Tensor:
        video_id, timestamp = parse_key(key)
        result = self.get(video_id, timestamp)
        assert isinstance(result, torch.Tensor)
        return result

    def read_video(self, video_id: str, *, with_boxes: bool = False) -> VideoRows:
        """Every row of one video in one read per dataset (export, analysis)."""
        bank = self._video(video_id)[0]
        rows = bank.read_video(video_id, with_boxes=with_boxes)
        boxes = torch.from_numpy(rows.boxes) if rows.boxes is not None else None
        scores = torch.from_numpy(rows.scores) if rows.scores is not None else None
        return VideoRows(rows.timestamps, rows.row_offsets, torch.from_numpy(rows.features), boxes, scores)

    def sample_window(
        self,
        video_id: str,
        timestamp: int,
        window_size: int = 60,
        max_per_second: int = 5,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Long-term features around ``timestamp``: float32 ``[window_size * max_per_second, C]``.

        Seconds ``timestamp - window_size // 2`` onward, ``window_size`` of them; second ``i`` fills
        rows ``[i*K, (i+1)*K)`` with ``torch.randperm(n, generator=generator)[:K]`` of its ``n``
        features (one draw per present second, in increasing time, as MMAction2 1.x does), zeros
        after them and for absent seconds. The window's rows are read with one HDF5 slice.
        """
        if window_size <= 0 or max_per_second <= 0:
            raise ValueError(f"window_size and max_per_second must be positive, got {window_size}, {max_per_second}")
        bank, k0, k1 = self._video(str(video_id))
        K, C = int(max_per_second), bank.feature_dim
        start = whole_seconds(timestamp) - window_size // 2
        times = bank.timestamps[k0:k1]
        lo = k0 + int(np.searchsorted(times, start, "left"))
        hi = k0 + int(np.searchsorted(times, start + window_size, "left"))
        offsets = bank.key_row_offsets[lo : hi + 1]
        r0, r1 = int(offsets[0]), int(offsets[-1])
        if r1 == r0:
            return torch.zeros(window_size * K, C, dtype=torch.float32)
        # One read; rows converted once into a float32 block whose extra last row is the zero row.
        n = r1 - r0
        block = torch.empty(n + 1, C, dtype=torch.float32)
        block[:n].copy_(torch.from_numpy(bank.feature_rows(r0, r1)))
        block[n].zero_()
        counts = np.diff(offsets)
        picks = [torch.randperm(c, generator=generator)[:K] for c in counts.tolist()]
        taken = np.minimum(counts, K)
        first_slot = (bank.timestamps[lo:hi] - start) * K
        rank = np.arange(int(taken.sum())) - np.repeat(np.cumsum(taken) - taken, taken)
        target = torch.from_numpy(np.repeat(first_slot, taken) + rank)
        index = torch.full((window_size * K,), n, dtype=torch.int64)
        index[target] = torch.cat(picks) + torch.from_numpy(np.repeat(offsets[:-1] - r0, taken))
        return torch.index_select(block, 0, index)


def _as_path(path: Any) -> Path:
    """A bank path: str, os.PathLike or bytes (decoded as the OS does); anything else a TypeError."""
    if isinstance(path, bytes):
        return Path(os.fsdecode(path))
    if isinstance(path, (str, os.PathLike)):
        return Path(path)
    raise TypeError(f"FeatureBank takes a bank path or a list of bank paths, not {type(path).__name__} {path!r}")


def _names(paths: Sequence[Path]) -> str:
    return ", ".join(str(p) for p in paths)
