"""The records of ``recognize`` (one JSON object per input) and the JSONL file they go to.

Every record carries the run's settings and their fingerprint, so a file says how it was made and
``--resume`` can refuse a run with other settings. While a run goes on, each rank appends its records
to ``OUT.rankNNNNN.part``, one complete line at a time (write, flush, fsync); a line cut short by a
kill is dropped when the run resumes. When every input has a record, rank 0 writes ``OUT`` in input
order (temporary name, fsync, rename) and removes the parts.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import IO, Any

from lfbtool._io.atomic import atomic_write, os_error_text
from lfbtool.errors import LfbError, RunError
from lfbtool.recognize.scoring import VideoResult, top_k

__all__ = ["RecordWriter", "error_record", "fingerprint", "load_done", "part_path", "result_record", "write_results"]


def fingerprint(settings: Mapping[str, Any]) -> str:
    """sha256 (16 hex digits) of the settings' canonical JSON."""
    return hashlib.sha256(json.dumps(dict(settings), sort_keys=True).encode()).hexdigest()[:16]


def result_record(
    result: VideoResult, index: int, names: Sequence[str] | None, k: int, settings: Mapping[str, Any]
) -> dict[str, Any]:
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


def error_record(input_text: str, index: int, error: str, settings: Mapping[str, Any]) -> dict[str, Any]:
    """The record of an input that could not be scored."""
    return {"index": index, "input": input_text, "error": error, "fingerprint": fingerprint(settings),
            "settings": dict(settings)}


def part_path(out: str | os.PathLike[str], rank: int) -> Path:
    out = Path(out)
    return out.with_name(f"{out.name}.rank{rank:05d}.part")


def part_files(out: str | os.PathLike[str]) -> list[Path]:
    out = Path(out)
    return sorted(out.parent.glob(f"{out.name}.rank[0-9][0-9][0-9][0-9][0-9].part"))


class RecordWriter:
    """Appends complete lines to a part file: each record is written, flushed and fsynced."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            self._handle: IO[str] = open(path, "a", encoding="utf-8")
        except OSError as error:
            raise RunError(f"{path}: cannot write ({os_error_text(error)})") from error

    def write(self, record: Mapping[str, Any]) -> None:
        try:
            self._handle.write(json.dumps(record) + "\n")
            self._handle.flush()
            os.fsync(self._handle.fileno())
        except OSError as error:
            raise RunError(f"{self.path}: cannot write ({os_error_text(error)})") from error

    def close(self) -> None:
        self._handle.close()


def read_records(path: Path, *, repair: bool = False) -> list[dict[str, Any]]:
    """The complete lines of a results file; with ``repair`` a trailing partial line is cut off the file."""
    data = path.read_bytes()
    complete = data[: data.rfind(b"\n") + 1]
    if repair and len(complete) != len(data):
        with open(path, "r+b") as handle:
            handle.truncate(len(complete))
            os.fsync(handle.fileno())
    records = []
    for number, line in enumerate(complete.decode("utf-8").splitlines(), start=1):
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            raise LfbError(f"{path}: line {number} is not JSON; rerun with --overwrite") from None
    return records


def _differences(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    return [f"{key} {old.get(key)!r} -> {new.get(key)!r}" for key in sorted(set(old) | set(new))
            if old.get(key) != new.get(key)]


def existing_outputs(out: Path, extra: Iterable[Path] = ()) -> list[Path]:
    """Files a previous run left: the results, its parts, and ``extra`` (features file, its parts)."""
    return [p for p in (out, *part_files(out), *extra) if p.exists()]


def load_done(out: Path, inputs: Sequence[str], settings: Mapping[str, Any]) -> dict[int, dict[str, Any]]:
    """Records already in ``out`` and its parts, by input index, for ``--resume``.

    Refused (one line): records made with other settings (naming them), or for other inputs.
    """
    done: dict[int, dict[str, Any]] = {}
    expected = fingerprint(settings)
    for path in (out, *part_files(out)):
        if not path.exists():
            continue
        for record in read_records(path, repair=path != out):
            if record.get("fingerprint") != expected:
                diff = "; ".join(_differences(record.get("settings", {}), settings)) or "unknown settings"
                raise LfbError(f"{path}: made with other settings ({diff}); rerun with those or pass --overwrite")
            index = int(record["index"])
            if index >= len(inputs) or record["input"] != inputs[index]:
                raise LfbError(
                    f"{path}: input {index} is {record['input']!r} but this run's is "
                    f"{inputs[index] if index < len(inputs) else 'missing'!r}; resume with the same inputs or --overwrite"
                )
            done[index] = record
    return done


def collect(out: Path) -> dict[int, dict[str, Any]]:
    """Every record in ``out`` and its parts, by index (rank 0, after the barrier)."""
    records: dict[int, dict[str, Any]] = {}
    for path in (out, *part_files(out)):
        if path.exists():
            records.update((int(r["index"]), r) for r in read_records(path))
    return records


def write_results(out: Path, records: Sequence[Mapping[str, Any]]) -> Path:
    """``out`` with ``records`` (in input order), atomically; then the parts are removed."""
    text = "".join(json.dumps(record) + "\n" for record in records)
    atomic_write(out, lambda handle: handle.write(text), binary=False)
    for part in part_files(out):
        part.unlink(missing_ok=True)
    return out
