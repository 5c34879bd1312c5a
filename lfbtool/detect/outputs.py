"""What ``lfbtool detect`` writes: the proposals file, its sidecar, and crash-safe per-rank parts.

Output (chosen by the extension of ``--out``):

* ``.pkl``: MMAction2's proposals dict ``"video_id,0002" -> float32 [n, 5]`` (normalised x1 y1 x2 y2,
  score); keyframes without a person are left out (MMAction2 takes the max score of every entry).
* ``.csv``: FAIR's 8 columns ``video_id,0002,x1,y1,x2,y2,,score`` (empty action id), the layout the
  original LFB and PySlowFast read; numbers with 9 significant digits (float32 round-trips).
* ``<out>.json``: the sidecar: detector, checkpoint sha256, thresholds, sampling settings, counts.

Parts (``<out>.parts/``, the run scaffold's layout, :mod:`lfbtool.runs.parts`): an attempt record,
segments ``detect-a001-r00000-s000000.pkl`` of up to ``segment_size`` keyframes each (every keyframe
done, with or without persons; each written to a temporary name, fsynced and renamed, so a kill loses
only the segment in progress) and a manifest per rank.
"""

from __future__ import annotations

import json
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lfbtool._io.atomic import atomic_write, write_json_atomic
from lfbtool.data.ava import read_proposals
from lfbtool.errors import LfbError, RunError
from lfbtool.keys import key_text
from lfbtool.runs.parts import Finished, RunParts, parts_directory_beside

Key = tuple[str, int]


def output_format(out: str | Path) -> str:
    """``pkl`` or ``csv`` from the extension of ``--out``."""
    suffix = Path(out).suffix.lower()
    if suffix not in (".pkl", ".csv"):
        raise LfbError(f"{out}: --out must end in .pkl (MMAction2 proposals) or .csv (FAIR boxes), "
                       f"got {suffix or 'no extension'!r}")
    return suffix[1:]


def sidecar_path(out: str | Path) -> Path:
    return Path(f"{out}.json")


def sidecar_settings(out: str | Path) -> dict[str, Any] | None:
    """The ``settings`` of the sidecar beside a proposals file, or None when it has none (FAIR's CSVs,
    MMAction2's pickles); a sidecar that is there but unreadable is one error naming it."""
    sidecar = sidecar_path(out)
    if not sidecar.exists():
        return None
    try:
        settings = json.loads(sidecar.read_text())["settings"]
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError) as error:
        raise LfbError(f"{sidecar}: not a sidecar written by lfbtool detect ({type(error).__name__}: {error}); "
                       f"fix or remove it") from None
    if not isinstance(settings, dict):
        raise LfbError(f"{sidecar}: not a sidecar written by lfbtool detect (settings is not an object); "
                       f"fix or remove it")
    return settings


def detector_threshold_of(proposals: str | Path) -> float | None:
    """The score threshold of the detector that wrote ``proposals`` (``lfbtool detect``, per its sidecar
    ``<proposals>.json``); None when the file has no sidecar (proposals from elsewhere)."""
    settings = sidecar_settings(proposals)
    if settings is None:
        return None
    value = settings.get("score_threshold")
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise LfbError(f"{sidecar_path(proposals)}: settings.score_threshold must be a number, got {value!r}")
    return float(value)


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


class _BoxesBuilder:
    """One part: keyframes -> boxes, pickled (temporary name, fsync, rename) when finished."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.pending: dict[str, np.ndarray] = {}

    def add(self, key: Key, boxes: np.ndarray) -> None:
        self.pending[key_text(*key)] = np.asarray(boxes, dtype=np.float32).reshape(-1, 5)

    @property
    def count(self) -> int:
        return len(self.pending)

    @property
    def rows(self) -> int:
        return int(sum(len(b) for b in self.pending.values()))

    def finish(self) -> None:
        data = self.pending
        atomic_write(self.path, lambda handle: pickle.dump(data, handle, protocol=4))

    def abort(self) -> None:
        self.pending = {}


def read_box_part(path: Path) -> dict[Key, np.ndarray]:
    """A part's boxes by key, loaded without running pickled code."""
    from lfbtool._io.safe_pickle import load_plain

    data = load_plain(path)
    if not isinstance(data, dict):
        raise LfbError(f"{path}: not a detect part (a dict of boxes)")
    found = {}
    for text, boxes in data.items():
        video_id, _, timestamp = str(text).rpartition(",")
        found[(video_id, int(timestamp))] = np.asarray(boxes, dtype=np.float32).reshape(-1, 5)
    return found


@dataclass(frozen=True)
class BoxParts:
    """The part format of detect: up to --segment-size keyframes' boxes (with or without persons)."""

    suffix: str = ".pkl"
    item: str = "keyframes"

    def start(self, path: Path) -> _BoxesBuilder:
        return _BoxesBuilder(path)

    def keys(self, path: Path, label: str) -> list[Key]:
        return list(read_box_part(path))


def detect_parts(out: str | Path, name: str = "detect") -> RunParts:
    """``<out>.parts/``: the parts of the detect runs writing ``out`` (``name``: extract's mode)."""
    return RunParts(parts_directory_beside(Path(out)), name, BoxParts(), command="detect")


def _sidecar_settings(out: Path) -> dict[str, Any]:
    try:
        settings = sidecar_settings(out)
    except LfbError:
        settings = None
    if settings is None:
        raise LfbError(f"{out}: exists without a readable sidecar {sidecar_path(out).name}; "
                       "pass --overwrite to detect again")
    return settings


def detections_finished(out: str | Path) -> Finished:
    """``out`` as a finished output: its settings are in the sidecar, which goes with it."""
    out = Path(out)
    return Finished(out, _sidecar_settings, companions=(sidecar_path(out),))


def assemble_detections(parts: RunParts, keys: list[Key]) -> Detections:
    """Every wanted keyframe's boxes from the finished parts (RunError if one is missing)."""
    found: dict[Key, np.ndarray] = {}
    for path in parts.finished()[0]:
        found.update(read_box_part(path))
    missing = [key for key in keys if key not in found]
    if missing:
        raise RunError(f"{parts.directory}: {len(missing)} keyframes have no finished segment "
                       f"(first {key_text(*missing[0])}); rerun with --resume")
    return Detections({key: found[key] for key in keys})
