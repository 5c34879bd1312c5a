"""Extract's parts: bank segments under ``OUT/shards/``, and their merge into ``OUT/lfb_{mode}.h5``.

A segment is a small bank written by the same :class:`~lfbtool.bank.writer.BankWriter` (temporary name,
renamed when complete), so one merge serves segments and whole banks and a crashed run's segments need
no special reader. Names, records and resume follow the run scaffold (:mod:`lfbtool.runs.parts`)::

    OUT/shards/train-a001.json               attempt record
    OUT/shards/train-a001-r00000-s000000.h5  a segment of up to --segment-size keyframes
    OUT/shards/train-a001-r00000.json        rank manifest

Torch-free: ``lfbtool merge OUT`` uses it without a model.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lfbtool.bank import format as fmt
from lfbtool.bank.merge import MergeReport, merge_banks
from lfbtool.bank.writer import BankWriter
from lfbtool.choices import OnConflict
from lfbtool.errors import LfbError, RunError
from lfbtool.runs.parts import Finished, RunParts

__all__ = ["BankSegments", "bank_finished", "merge_shards", "segment_parts", "shards_dir"]

Key = fmt.Key


def shards_dir(out_dir: Path) -> Path:
    return Path(out_dir) / "shards"


class _SegmentBuilder:
    """One segment being written: rows of keys in increasing order, renamed into place by ``finish``."""

    def __init__(self, path: Path, bank_kwargs: dict[str, Any]) -> None:
        self._writer = BankWriter(path, **bank_kwargs)

    def add(self, key: Key, item: tuple[Any, Any, Any]) -> None:
        features, boxes, scores = item
        self._writer.append(key[0], key[1], features, boxes, scores)

    @property
    def count(self) -> int:
        return self._writer.num_keys

    @property
    def rows(self) -> int:
        return self._writer.num_rows

    def finish(self) -> None:
        self._writer.close()

    def abort(self) -> None:
        self._writer.abort()


@dataclass(frozen=True)
class BankSegments:
    """The part format of extract: a segment is a bank of ``mode``; ``bank_kwargs`` (feature size,
    dtype, config) are needed only to write."""

    mode: str
    bank_kwargs: dict[str, Any] = field(default_factory=dict)
    suffix: str = ".h5"
    item: str = "keyframes"

    def start(self, path: Path) -> _SegmentBuilder:
        return _SegmentBuilder(path, {**self.bank_kwargs, "mode": self.mode})

    def keys(self, path: Path, label: str) -> list[Key]:
        header = fmt.read_header(path, label)
        if header.mode != self.mode:
            raise LfbError(f"{label}: holds mode {header.mode!r} keyframes, expected {self.mode!r}; "
                           "not this run's segment")
        return header.keys()


def segment_parts(out: Path, mode: str, bank_kwargs: dict[str, Any] | None = None) -> RunParts:
    """The parts of extract runs of ``mode`` in ``out``."""
    return RunParts(shards_dir(out), mode, BankSegments(mode, bank_kwargs or {}), command="extract")


def bank_finished(bank: Path, settings_of: Any) -> Finished:
    """The bank as a finished output: its recorded config, reduced by ``settings_of`` to what a resume compares."""
    return Finished(bank, lambda path: settings_of(json.loads(fmt.read_header(path).attrs["config"] or "{}")))


def merge_shards(directory: Path, bank: Path, *, mode: str, keep_shards: bool = False,
                 on_conflict: OnConflict = OnConflict.error, overwrite: bool = False) -> MergeReport:
    """Check a finished ``mode`` run's records, merge its segments into ``bank``, then drop them.

    The caller holds the OUT's :class:`~lfbtool._io.lock.RunLock` (extract's rank 0, or ``lfbtool merge``).
    """
    parts = RunParts(Path(directory), mode, BankSegments(mode), command="extract")
    if not parts.attempts():
        raise LfbError(f"{directory}: no shards to merge for mode {mode} (no attempt record {mode}-a###.json)")
    segments, expected = parts.finished()
    labels = [parts.label(p) for p in segments]
    # Segments of a resumed run hold the config of the attempt that wrote them, which differs in run
    # settings (resume, workers, ...); the bank records the newest, not a list of every segment's.
    newest = fmt.read_header(segments[-1], labels[-1]) if segments else None
    report = merge_banks(segments, bank, labels=labels, on_conflict=on_conflict, overwrite=overwrite,
                         mode=mode, config_json=newest.attrs["config"] if newest else None)
    if expected >= 0 and report.keys != expected:
        bank.unlink(missing_ok=True)
        raise RunError(f"{directory}: merged {report.keys} keyframes but the run planned {expected}")
    if not keep_shards:
        parts.remove()
    return report
