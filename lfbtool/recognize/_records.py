"""The records of ``recognize`` (one JSON object per input), the JSONL file they go to, and the parts
that hold them while a run goes on.

Every record carries the run's settings and their fingerprint (:mod:`lfbtool.runs.settings`), so a
file says how it was made and ``--resume`` can refuse a run with other settings. While a run goes on,
each rank publishes parts through the run scaffold (``<out>.parts/recognize-a001-r00000-s000000.npz``,
up to ``segment_size`` inputs each: their records as JSON and, with ``--features``, their embeddings),
so a kill loses only the part in progress. When every input has a record, rank 0 writes the JSONL file
in input order (and the embeddings file) and removes the parts.
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lfbtool._io.atomic import atomic_write
from lfbtool.errors import LfbError
from lfbtool.recognize.labels import top_k
from lfbtool.recognize.scoring import VideoResult
from lfbtool.runs.settings import fingerprint

__all__ = ["RecordParts", "error_record", "inputs_digest", "read_results", "result_record", "results_settings",
           "write_results"]

Record = dict[str, Any]


def inputs_digest(inputs: Sequence[str]) -> str:
    """sha256 of the input list: a resume must score the same inputs in the same order."""
    return hashlib.sha256("\n".join(inputs).encode()).hexdigest()


def result_record(result: VideoResult, index: int, names: Sequence[str] | None, k: int,
                  settings: Mapping[str, Any]) -> Record:
    """The JSON record of a scored input (``index``: its position among all inputs)."""
    if result.error is not None or result.scores is None:
        return error_record(result.input, index, result.error or "no scores", settings)
    ranked = top_k(result.scores, k)
    return {
        "index": index,
        "input": result.input,
        "num_frames": result.num_frames,
        "views": result.num_views,
        "looped": result.looped,
        "average_clips": settings["average_clips"],
        "top_k": [
            {"rank": r + 1, "index": i, "label": names[i] if names is not None else str(i), "score": s}
            for r, (i, s) in enumerate(ranked)
        ],
        "scores": result.scores.tolist(),
        "fingerprint": fingerprint(settings),
        "settings": dict(settings),
    }


def error_record(input_text: str, index: int, error: str, settings: Mapping[str, Any]) -> Record:
    """The record of an input that could not be scored."""
    return {"index": index, "input": input_text, "error": error, "fingerprint": fingerprint(settings),
            "settings": dict(settings)}


class _RecordsBuilder:
    """One part: records (and embeddings) of up to ``segment_size`` inputs, saved as one ``.npz``."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.records: list[Record] = []
        self.embedded: list[int] = []
        self.embeddings: list[np.ndarray] = []

    def add(self, key: int, item: tuple[Record, np.ndarray | None]) -> None:
        record, embedding = item
        self.records.append(record)
        if embedding is not None:
            self.embedded.append(int(key))
            self.embeddings.append(np.asarray(embedding, dtype=np.float32))

    @property
    def count(self) -> int:
        return len(self.records)

    @property
    def rows(self) -> int:
        return len(self.embeddings)

    def finish(self) -> None:
        arrays = {"records": np.array(json.dumps(self.records)), "embedded": np.array(self.embedded, dtype=np.int64)}
        if self.embeddings:
            arrays["embeddings"] = np.stack(self.embeddings)
        buffer = io.BytesIO()
        np.savez(buffer, **arrays)
        atomic_write(self.path, lambda handle: handle.write(buffer.getvalue()))

    def abort(self) -> None:
        self.records, self.embedded, self.embeddings = [], [], []


@dataclass(frozen=True)
class RecordParts:
    """The part format of recognize: records by input index, with their embeddings."""

    suffix: str = ".npz"
    item: str = "inputs"

    def start(self, path: Path) -> _RecordsBuilder:
        return _RecordsBuilder(path)

    def read(self, path: Path) -> tuple[list[Record], dict[int, np.ndarray]]:
        """A part's records and embeddings by index (loaded without pickle)."""
        try:
            with np.load(path, allow_pickle=False) as data:
                records = json.loads(str(data["records"]))
                embedded = [int(i) for i in data["embedded"]]
                stacked = data["embeddings"] if "embeddings" in data.files else np.zeros((0,), np.float32)
        except (OSError, ValueError, KeyError) as error:
            raise LfbError(f"{path}: unreadable recognize part ({error}); rerun with --overwrite") from None
        if not isinstance(records, list) or len(stacked) != len(embedded):
            raise LfbError(f"{path}: not a recognize part; rerun with --overwrite")
        return records, dict(zip(embedded, stacked, strict=True))

    def keys(self, path: Path, label: str) -> list[int]:
        return [int(record["index"]) for record in self.read(path)[0]]


def read_results(path: Path) -> list[Record]:
    """The records of a finished results file, in input order."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise LfbError(f"{path}: cannot read the results ({error})") from None
    records = []
    for number, line in enumerate(text.splitlines(), start=1):
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            raise LfbError(f"{path}: line {number} is not JSON; rerun with --overwrite") from None
    return records


def results_settings(path: Path) -> dict[str, Any]:
    """What a finished results file was made with (its records' settings), for ``--resume``."""
    records = read_results(path)
    settings = records[0].get("settings") if records else None
    if not isinstance(settings, dict):
        raise LfbError(f"{path}: holds no records with settings; rerun with --overwrite")
    return settings


def write_results(out: Path, records: Sequence[Mapping[str, Any]]) -> Path:
    """``out`` with ``records`` (in input order), atomically."""
    text = "".join(json.dumps(record) + "\n" for record in records)
    return atomic_write(out, lambda handle: handle.write(text), binary=False)
