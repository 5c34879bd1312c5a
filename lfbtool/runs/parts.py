"""A run's parts directory: plan an attempt, write parts per rank, check and list them for assembly.

Every resumable command (extract, detect, recognize) keeps its unfinished work here, under one naming
rule (:mod:`lfbtool.runs.naming`) and one pair of records (:mod:`lfbtool.runs.records`). What a part
holds is the command's own (:class:`PartFormat`): a bank segment, a pickle of boxes, records and
embeddings. What is common lives here once:

* **prepare** (rank 0, holding the run's lock): refuse or clean an earlier run, compare its settings
  with this run's (one fingerprint, one "what differs" message), drop temporaries of dead processes,
  list the items already stored, write the new attempt record;
* **write** (every rank): :class:`PartWriter` publishes a part every ``segment_size`` items (temporary
  name, fsync, rename), so a kill loses only the part in progress; a manifest when the rank is done;
* **finished** (rank 0, after every rank is done): the parts of the newest attempt and the ones it
  kept, each checked against the records, in order for assembly.
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from lfbtool._io.atomic import discard, temporary_path
from lfbtool._io.lock import remove_dead_temporaries
from lfbtool.errors import LfbError
from lfbtool.runs.naming import PartName, check_mode, parse_record, part_name
from lfbtool.runs.records import AttemptRecord, PartEntry, RankManifest
from lfbtool.runs.settings import describe_differences, differing_settings, fingerprint

__all__ = ["Finished", "PartBuilder", "PartFormat", "PartWriter", "RunParts", "RunPlan", "parts_directory_beside"]

Key = Hashable


class PartBuilder(Protocol):
    """One part being written; nothing carries its final name until :meth:`finish`."""

    def add(self, key: Key, item: Any) -> None: ...

    @property
    def count(self) -> int: ...

    @property
    def rows(self) -> int: ...

    def finish(self) -> None: ...

    def abort(self) -> None: ...


class PartFormat(Protocol):
    """What a command's parts hold: how one is written and which keys a published one stores."""

    suffix: str  # ".h5", ".pkl", ...
    item: str  # what its keys count, in messages: "keyframes", "inputs"

    def start(self, path: Path) -> PartBuilder: ...

    def keys(self, path: Path, label: str) -> list[Key]: ...


@dataclass(frozen=True)
class RunPlan:
    """Rank 0's decision, shared with every rank: nothing to do (the output exists and matches), or
    this attempt's number and the keys earlier attempts already stored."""

    complete: bool
    attempt: int = 0
    done: tuple[Key, ...] = ()


@dataclass(frozen=True)
class Finished:
    """The assembled output of a run: when ``path`` exists the run is complete; ``settings`` reads the
    settings it recorded (compared on ``--resume``); ``companions`` go with it on ``--overwrite``."""

    path: Path
    settings: Callable[[Path], dict[str, Any]]
    companions: tuple[Path, ...] = ()

    def paths(self) -> list[Path]:
        return [self.path, *self.companions]


class PartWriter:
    """One rank's parts of one attempt: :meth:`append` items, a part every ``segment_size`` of them."""

    def __init__(self, parts: RunParts, attempt: int, rank: int, segment_size: int) -> None:
        self.parts, self.attempt, self.rank, self.segment_size = parts, attempt, rank, max(1, segment_size)
        self._open: PartBuilder | None = None
        self._published: list[PartEntry] = []

    @property
    def published(self) -> tuple[PartEntry, ...]:
        return tuple(self._published)

    def append(self, key: Key, item: Any) -> None:
        if self._open is None:
            path = self.parts.part_path(self.attempt, self.rank, len(self._published))
            self._open = self.parts.format.start(path)
        self._open.add(key, item)
        if self._open.count >= self.segment_size:
            self.flush()

    def flush(self) -> None:
        """Publish the open part now (also when it holds fewer than ``segment_size`` items)."""
        builder, self._open = self._open, None
        if builder is None or builder.count == 0:
            if builder is not None:
                builder.abort()
            return
        name = part_name(self.parts.name, self.attempt, self.rank, len(self._published), self.parts.format.suffix)
        builder.finish()
        self._published.append(PartEntry(name, builder.count, builder.rows))

    def close(self, items: int) -> Path:
        """Publish the open part and write this rank's manifest (``items``: what the rank was given)."""
        self.flush()
        manifest = RankManifest(self.parts.name, self.attempt, self.rank, items, tuple(self._published))
        return manifest.write(self.parts.directory)

    def abort(self) -> None:
        """Drop the part in progress; published parts stay (a resume keeps them). Its temporary goes too
        when a signal came while it was being started, before this writer held it."""
        builder, self._open = self._open, None
        if builder is not None:
            builder.abort()
        discard(temporary_path(self.parts.part_path(self.attempt, self.rank, len(self._published))))


@dataclass
class RunParts:
    """The parts of the runs named ``name`` (a mode, or the command) in ``directory``."""

    directory: Path
    name: str
    format: PartFormat
    command: str  # "extract", "detect", "recognize": messages say "rerun extract with --resume"

    def __post_init__(self) -> None:
        self.directory = Path(self.directory)
        check_mode(self.name)

    # -- names -----------------------------------------------------------------------------------
    def part_path(self, attempt: int, rank: int, seq: int) -> Path:
        return self.directory / part_name(self.name, attempt, rank, seq, self.format.suffix)

    def label(self, path: Path) -> str:
        parsed = PartName.parse(path)
        return parsed.label(path) if parsed else str(path)

    def parts(self) -> list[Path]:
        """Published parts of this name, sorted (attempt, rank, sequence)."""
        if not self.directory.is_dir():
            return []
        found = []
        for path in self.directory.iterdir():
            parsed = PartName.parse(path)
            if parsed and parsed.name == self.name and parsed.ext == self.format.suffix:
                found.append((parsed.attempt, parsed.rank, parsed.seq, path))
        return [path for *_, path in sorted(found)]

    def records(self) -> list[Path]:
        """Attempt records and rank manifests of this name."""
        if not self.directory.is_dir():
            return []
        return sorted(p for p in self.directory.iterdir() if (r := parse_record(p)) and r[0] == self.name)

    def attempts(self) -> list[int]:
        attempts = {r[1] for p in self.records() if (r := parse_record(p)) and r[2] is None}
        return sorted(attempts)

    def writer(self, plan: RunPlan, rank: int, segment_size: int) -> PartWriter:
        return PartWriter(self, plan.attempt, rank, segment_size)

    # -- cleaning --------------------------------------------------------------------------------
    def remove_dead_temporaries(self, *near: Path) -> list[Path]:
        """Temporaries in the parts directory and beside ``near`` whose process is gone."""
        candidates = list(self.directory.iterdir()) if self.directory.is_dir() else []
        for path in near:
            candidates.extend(Path(path).parent.glob(f"{Path(path).name}.tmp-*"))
        return remove_dead_temporaries(candidates)

    def remove(self) -> None:
        """Delete this name's parts and records and dead temporaries (the directory too, once empty)."""
        for path in [*self.parts(), *self.records()]:
            path.unlink(missing_ok=True)
        self.remove_dead_temporaries()
        try:
            self.directory.rmdir()
        except OSError:
            pass  # other modes' files, a live temporary, or gone already

    # -- rank 0, before any work -----------------------------------------------------------------
    def _check_writable(self) -> None:
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            probe = self.directory / f".write-test-{socket.gethostname()}"
            probe.write_text("ok")
            probe.unlink()
        except OSError as error:
            raise LfbError(f"{self.directory}: output directory is not writable ({error.strerror or error})") from None

    def _existing_settings(self, final: Finished | None) -> tuple[str, dict[str, Any] | None]:
        """Where the earlier run's settings are recorded, and what they are (None: unreadable)."""
        if final is not None and final.path.exists():
            try:
                return str(final.path), final.settings(final.path)
            except LfbError:
                return str(final.path), None
        attempts = self.attempts()
        if attempts:
            where = str(AttemptRecord.path(self.directory, self.name, attempts[-1]))
            try:
                return where, AttemptRecord.read(self.directory, self.name, attempts[-1]).settings
            except LfbError:
                return where, None
        return str(self.directory), None

    def _refuse_earlier(self, settings: dict[str, Any], final: Finished | None,
                        other_output_hint: str | Callable[[list[str]], str]) -> None:
        where, existing = self._existing_settings(final)
        found = Path(where).name if final is not None and where == str(final.path) else (
            f"{len(self.parts())} finished segments in {self.directory}")
        if existing is None or not differing_settings(settings, existing):
            raise LfbError(f"{where}: holds results of an earlier {self.command} run ({found}); pass --resume to continue "
                           "it or --overwrite to start over")
        if callable(other_output_hint):  # the command's own advice, from the names of what differs
            advice = other_output_hint(differing_settings(settings, existing))
        else:
            advice = f"to keep it, {other_output_hint or 'write to another output'}; pass --overwrite only to replace it"
        raise LfbError(f"{where}: holds an earlier {self.command} run with other settings "
                       f"({describe_differences(settings, existing, then='there')}); {advice}")

    def prepare(self, settings: dict[str, Any], keys: Iterable[Key], *, world_size: int, resume: bool,
                overwrite: bool, final: Finished | None = None,
                other_output_hint: str | Callable[[list[str]], str] = "") -> RunPlan:
        """Check and clean, choose the attempt number, record it; the keys already stored.
        ``other_output_hint``: how to keep an earlier run with other settings (a callable gets the names
        of the differing settings and returns the whole advice)."""
        self._check_writable()
        if overwrite:
            self.remove_dead_temporaries()
            for path in [*self.parts(), *self.records(), *(final.paths() if final else [])]:
                path.unlink(missing_ok=True)
        parts, attempts = self.parts(), self.attempts()
        final_exists = final is not None and final.path.exists()
        if not resume and (parts or attempts or final_exists):
            self._refuse_earlier(settings, final, other_output_hint)
        self.remove_dead_temporaries(*(final.paths() if final else []))
        if final_exists:
            assert final is not None
            recorded = final.settings(final.path)
            if differing_settings(settings, recorded):
                raise LfbError(f"{final.path}: refusing to resume with other settings: "
                               f"{describe_differences(settings, recorded, then='there')}")
            return RunPlan(complete=True)
        for attempt in attempts:
            record = AttemptRecord.read(self.directory, self.name, attempt)
            if differing_settings(settings, record.settings):
                raise LfbError(f"{self.directory}: refusing to resume with other settings: "
                               f"{describe_differences(settings, record.settings, then='in attempt ' + str(attempt))}")
        done: set[Key] = set()
        prior = []
        for path in parts:
            stored = self.format.keys(path, self.label(path))
            done.update(stored)
            prior.append(PartEntry(path.name, len(stored)))
        attempt = max([*attempts, *(PartName.parse(p).attempt for p in parts)], default=0) + 1  # type: ignore[union-attr]
        wanted = set(keys)
        AttemptRecord(mode=self.name, attempt=attempt, world_size=world_size, total_keyframes=len(wanted),
                      config_fingerprint=fingerprint(settings), settings=settings,
                      prior_segments=tuple(prior)).write(self.directory)
        return RunPlan(complete=False, attempt=attempt, done=tuple(sorted(done & wanted, key=_sort_key)))

    # -- rank 0, after every rank is done --------------------------------------------------------
    def finished(self) -> tuple[list[Path], int]:
        """The parts of the newest attempt and those it kept, checked against the records, in order;
        and how many items the run was to produce."""
        attempts = self.attempts()
        if not attempts:
            raise LfbError(f"{self.directory}: no parts to assemble for {self.name} "
                           f"(no attempt record {self.name}-a###.json)")
        record = AttemptRecord.read(self.directory, self.name, attempts[-1])
        expected: list[tuple[Path, int, str]] = []
        for entry in record.prior_segments:
            path = self.directory / entry.name
            expected.append((path, entry.keys, f"{self.label(path)}, kept from an earlier attempt"))
        for rank in range(record.world_size):
            manifest = RankManifest.path(self.directory, self.name, record.attempt, rank)
            if not manifest.is_file():
                raise LfbError(f"{self.directory}: rank {rank} did not finish attempt {record.attempt} "
                               f"(no {manifest.name}); rerun {self.command} with --resume")
            for entry in RankManifest.read(self.directory, self.name, record.attempt, rank).segments:
                path = self.directory / entry.name
                expected.append((path, entry.keys, self.label(path)))
        for path, count, label in expected:
            if not path.is_file():
                raise LfbError(f"{label}: segment is missing")
            stored = len(self.format.keys(path, label))
            if stored != count:
                raise LfbError(f"{label}: holds {stored} {self.format.item}, its record says {count}; truncated")
        return [path for path, _, _ in expected], record.total_keyframes


def parts_directory_beside(output: Path) -> Path:
    """``<output>.parts/``: where a run whose output is one file keeps its parts."""
    output = Path(output)
    return output.with_name(f"{output.name}.parts")


def _sort_key(key: Key) -> Any:
    return key


def keys_in_order(keys: Sequence[Key], done: Iterable[Key]) -> list[Key]:
    """``keys`` without those in ``done``, in their given order."""
    skip = set(done)
    return [key for key in keys if key not in skip]
