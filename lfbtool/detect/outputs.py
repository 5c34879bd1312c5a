"""What ``lfbtool detect`` writes: the proposals file, its sidecar, and crash-safe per-rank parts.

Output (chosen by the extension of ``--out``):

* ``.pkl``: MMAction2's proposals dict ``"video_id,0002" -> float32 [n, 5]`` (normalised x1 y1 x2 y2,
  score); keyframes without a person are left out (MMAction2 takes the max score of every entry).
* ``.csv``: FAIR's 8 columns ``video_id,0002,x1,y1,x2,y2,,score`` (empty action id), the layout the
  original LFB and PySlowFast read; numbers with 9 significant digits (float32 round-trips).
* ``<out>.json``: the sidecar: detector, checkpoint sha256, thresholds, sampling settings, counts.

Parts (``<out>.parts/``): ``settings.json`` (rank 0, first) and segments ``aNNN-rNNNNN-sNNNNNN.pkl``
of up to ``segment_size`` keyframes each (every keyframe done, with or without persons), each written
to a temporary name, fsynced and renamed, so a kill loses only the segment in progress.
"""

from __future__ import annotations

import json
import pickle
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lfbtool._io.atomic import atomic_write, write_json_atomic
from lfbtool._io.lock import remove_dead_temporaries
from lfbtool.data.ava import read_proposals
from lfbtool.errors import LfbError, RunError
from lfbtool.extract.config import describe_differences
from lfbtool.keys import key_text

Key = tuple[str, int]
SEGMENT = re.compile(r"^a(\d{3})-r(\d{5})-s(\d{6})\.pkl$")


def output_format(out: str | Path) -> str:
    """``pkl`` or ``csv`` from the extension of ``--out``."""
    suffix = Path(out).suffix.lower()
    if suffix not in (".pkl", ".csv"):
        raise LfbError(f"{out}: --out must end in .pkl (MMAction2 proposals) or .csv (FAIR boxes), "
                       f"got {suffix or 'no extension'!r}")
    return suffix[1:]


def sidecar_path(out: str | Path) -> Path:
    return Path(f"{out}.json")


@dataclass
class Detections:
    """Person boxes per keyframe, float32 ``[n, 5]``; n may be 0."""

    boxes: dict[Key, np.ndarray]

    @classmethod
    def read(cls, path: str | Path) -> Detections:
        return cls(read_proposals(path))


def _csv_text(boxes: dict[Key, np.ndarray]) -> str:
    lines = []
    for (video_id, timestamp), rows in sorted(boxes.items()):
        for row in rows:
            x1, y1, x2, y2, score = (f"{float(v):.9g}" for v in row)
            lines.append(f"{video_id},{timestamp:04d},{x1},{y1},{x2},{y2},,{score}\n")
    return "".join(lines)


def write_detections(out: str | Path, detections: Detections, settings: dict[str, Any]) -> None:
    """The sidecar, then the output, each atomically: an output on disk always has its sidecar."""
    out = Path(out)
    kind = output_format(out)
    found = {key: np.ascontiguousarray(b, dtype=np.float32).reshape(-1, 5)
             for key, b in sorted(detections.boxes.items()) if len(b)}
    write_json_atomic(sidecar_path(out), {
        "format": {"pkl": "mmaction2-proposals-pkl", "csv": "fair-boxes-csv-8"}[kind],
        "settings": settings, "keyframes": len(detections.boxes), "keyframes_with_persons": len(found),
        "boxes": int(sum(len(b) for b in found.values())),
    })
    if kind == "pkl":
        data = {key_text(*key): value for key, value in found.items()}
        atomic_write(out, lambda handle: pickle.dump(data, handle, protocol=4))
    else:
        text = _csv_text(found)
        atomic_write(out, lambda handle: handle.write(text), binary=False)


class SegmentWriter:
    """One rank's segments of one attempt: ``append`` keyframes, a segment every ``size`` of them."""

    def __init__(self, directory: Path, attempt: int, rank: int, size: int) -> None:
        self.directory, self.attempt, self.rank, self.size = directory, attempt, rank, size
        self.pending: dict[str, np.ndarray] = {}
        self.seq = 0

    def append(self, key: Key, boxes: np.ndarray) -> None:
        self.pending[key_text(*key)] = np.asarray(boxes, dtype=np.float32).reshape(-1, 5)
        if len(self.pending) >= self.size:
            self.flush()

    def flush(self) -> None:
        if not self.pending:
            return
        name = f"a{self.attempt:03d}-r{self.rank:05d}-s{self.seq:06d}.pkl"
        data = self.pending
        atomic_write(self.directory / name, lambda handle: pickle.dump(data, handle, protocol=4))
        self.pending, self.seq = {}, self.seq + 1

    close = flush


class DetectParts:
    """``<out>.parts/``: settings record and segments of every attempt (see the module docstring)."""

    def __init__(self, out: str | Path) -> None:
        self.out = Path(out)
        self.directory = self.out.with_name(self.out.name + ".parts")
        self.settings_file = self.directory / "settings.json"

    def segments(self) -> list[Path]:
        if not self.directory.is_dir():
            return []
        return sorted(p for p in self.directory.iterdir() if SEGMENT.match(p.name))

    def _read_segment(self, path: Path) -> dict[Key, np.ndarray]:
        from lfbtool._io.safe_pickle import load_plain

        data = load_plain(path)
        out = {}
        for text, boxes in data.items():
            video_id, timestamp = text.rsplit(",", 1)
            out[(video_id, int(timestamp))] = np.asarray(boxes, dtype=np.float32).reshape(-1, 5)
        return out

    def prepare(self, settings: dict[str, Any], keys: list[Key], *, resume: bool, overwrite: bool) -> dict[str, Any]:
        """Rank 0, before any work: check and clean, choose the attempt, list keyframes already done."""
        sidecar = sidecar_path(self.out)
        if overwrite:
            shutil.rmtree(self.directory, ignore_errors=True)
            self.out.unlink(missing_ok=True)
            sidecar.unlink(missing_ok=True)
        segments = self.segments()
        earlier = self.out.exists() or segments or self.settings_file.exists()
        if earlier and not resume:
            found = self.out if self.out.exists() else self.directory
            raise LfbError(f"{found}: holds results of an earlier detect run; pass --resume to continue it "
                           "or --overwrite to start over")
        if self.out.exists():
            try:
                existing = json.loads(sidecar.read_text())["settings"]
            except (OSError, ValueError, KeyError, TypeError):
                raise LfbError(f"{self.out}: exists without a readable sidecar {sidecar.name}; "
                               "pass --overwrite to detect again") from None
            if existing != settings:
                raise LfbError(f"{self.out}: refusing to resume with other settings: "
                               f"{describe_differences(settings, existing)}")
            return {"complete": True}
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise LfbError(f"{self.directory}: cannot create ({error.strerror or error})") from None
        remove_dead_temporaries(list(self.directory.glob("*.tmp-*")))  # writes killed before their rename
        if self.settings_file.exists():
            try:
                existing = json.loads(self.settings_file.read_text())
            except (OSError, ValueError):
                raise LfbError(f"{self.settings_file}: unreadable; pass --overwrite to start over") from None
            if existing != settings:
                raise LfbError(f"{self.directory}: refusing to resume with other settings: "
                               f"{describe_differences(settings, existing)}")
        else:
            write_json_atomic(self.settings_file, settings)
        wanted = set(keys)
        done: set[Key] = set()
        for path in segments:
            done.update(self._read_segment(path))
        attempts = [int(SEGMENT.match(p.name)[1]) for p in segments]
        return {"complete": False, "attempt": max(attempts, default=0) + 1, "done": sorted(done & wanted)}

    def writer(self, attempt: int, rank: int, size: int) -> SegmentWriter:
        return SegmentWriter(self.directory, attempt, rank, size)

    def collect(self, keys: list[Key]) -> Detections:
        """Every wanted keyframe's boxes from the segments (RunError if one is missing)."""
        found: dict[Key, np.ndarray] = {}
        for path in self.segments():
            found.update(self._read_segment(path))
        missing = [key for key in keys if key not in found]
        if missing:
            raise RunError(f"{self.directory}: {len(missing)} keyframes have no finished segment "
                           f"(first {key_text(*missing[0])}); rerun with --resume")
        return Detections({key: found[key] for key in keys})

    def remove(self) -> None:
        shutil.rmtree(self.directory, ignore_errors=True)
