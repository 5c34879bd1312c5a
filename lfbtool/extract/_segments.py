"""Per-rank shards made of segments: crash-safe pieces of a bank, and the records that check them.

Layout under ``OUT/shards/`` (every name starts with the mode, so train and val runs never share one)::

    train-a001.json               attempt record (rank 0, at start; :class:`AttemptRecord`): mode, world
                                  size, fingerprint, settings, the segments earlier attempts left
                                  (kept as done), keyframes to do
    train-a001-r00000-s000000.h5  a segment: a complete bank file of up to --segment-size keyframes,
                                  written as ``*.tmp-<host>-<pid>`` and renamed, so a kill loses only
                                  the one in progress
    train-a001-r00000.json        rank manifest (each rank, when it finished; :class:`RankManifest`)

A merge needs the newest attempt record, a manifest from each of its ranks, and every segment those
name; anything missing or unreadable is refused by rank and segment.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from lfbtool._io.atomic import write_json_atomic
from lfbtool._io.lock import remove_dead_temporaries
from lfbtool.bank import format as fmt
from lfbtool.bank.writer import BankWriter
from lfbtool.errors import LfbError

SEGMENT_PATTERN = re.compile(r"^(.+)-a(\d{3})-r(\d{5})-s(\d{6})\.h5$")


def check_mode(mode: str) -> str:
    """The mode names files (``lfb_{mode}.h5``, ``{mode}-a001.json``): a plain name, no path."""
    if not mode or not re.fullmatch(r"[A-Za-z0-9_.+]+", mode) or mode in (".", ".."):
        raise LfbError(f"mode {mode!r} must be a plain name (letters, digits, _ . +): it names the output files")
    return mode


def shards_dir(out_dir: Path) -> Path:
    return Path(out_dir) / "shards"


def segment_name(mode: str, attempt: int, rank: int, seq: int) -> str:
    return f"{mode}-a{attempt:03d}-r{rank:05d}-s{seq:06d}.h5"


def manifest_path(directory: Path, mode: str, attempt: int, rank: int) -> Path:
    return directory / f"{mode}-a{attempt:03d}-r{rank:05d}.json"


def attempt_path(directory: Path, mode: str, attempt: int) -> Path:
    return directory / f"{mode}-a{attempt:03d}.json"


def segment_label(path: Path) -> str:
    match = SEGMENT_PATTERN.match(path.name)
    if not match:
        return str(path)
    mode, (attempt, rank, seq) = match.group(1), (int(g) for g in match.groups()[1:])
    return f"{mode} rank {rank} segment {seq} of attempt {attempt} ({path})"


@dataclass(frozen=True)
class SegmentEntry:
    """A finished segment as the records name it: file name, keyframes, rows (-1: not recorded)."""

    name: str
    keys: int
    rows: int = -1


@dataclass(frozen=True)
class AttemptRecord:
    """``a###.json``, written by rank 0 before any rank writes: what this attempt must produce."""

    mode: str
    attempt: int
    world_size: int
    total_keyframes: int
    config_fingerprint: str = ""
    settings: dict[str, Any] = field(default_factory=dict)
    prior_segments: tuple[SegmentEntry, ...] = ()

    def write(self, directory: Path) -> Path:
        return write_json_atomic(attempt_path(directory, self.mode, self.attempt), asdict(self))

    @classmethod
    def read(cls, directory: Path, mode: str, attempt: int) -> AttemptRecord:
        path = attempt_path(directory, mode, attempt)
        data = _read_json(path, f"attempt {attempt} record")
        try:
            prior = tuple(SegmentEntry(**item) for item in data.pop("prior_segments", []))
            return cls(prior_segments=prior, **data)
        except TypeError as error:
            raise LfbError(f"{path}: attempt {attempt} record is not one lfbtool wrote ({error})") from None


@dataclass(frozen=True)
class RankManifest:
    """``a###-r#####.json``, written by each rank when it finished: its segments and counts."""

    mode: str
    attempt: int
    rank: int
    keyframes: int
    segments: tuple[SegmentEntry, ...]
    complete: bool = True

    def write(self, directory: Path) -> Path:
        return write_json_atomic(manifest_path(directory, self.mode, self.attempt, self.rank), asdict(self))

    @classmethod
    def read(cls, directory: Path, mode: str, attempt: int, rank: int) -> RankManifest:
        path = manifest_path(directory, mode, attempt, rank)
        data = _read_json(path, f"rank {rank} manifest")
        try:
            segments = tuple(SegmentEntry(**item) for item in data.pop("segments"))
            return cls(segments=segments, **data)
        except (TypeError, KeyError) as error:
            raise LfbError(f"{path}: rank {rank} manifest is not one lfbtool wrote ({error})") from None


def _read_json(path: Path, what: str) -> dict[str, Any]:
    try:
        data = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise LfbError(f"{path}: {what} is missing") from None
    except (json.JSONDecodeError, OSError, UnicodeDecodeError) as error:
        raise LfbError(f"{path}: {what} is unreadable ({error})") from None
    if not isinstance(data, dict):
        raise LfbError(f"{path}: {what} is not a JSON object")
    return data


def list_segments(directory: Path, mode: str) -> list[Path]:
    """Complete segments of ``mode`` (renamed into place), sorted by name."""
    if not directory.is_dir():
        return []
    return sorted(p for p in directory.iterdir() if (m := SEGMENT_PATTERN.match(p.name)) and m.group(1) == mode)


def list_attempts(directory: Path, mode: str) -> list[int]:
    if not directory.is_dir():
        return []
    pattern = re.compile(rf"^{re.escape(mode)}-a(\d{{3}})\.json$")
    return sorted(int(m.group(1)) for p in directory.iterdir() if (m := pattern.match(p.name)))


def remove_temporaries(directory: Path) -> list[Path]:
    """Drop half-written files of processes of this host that are gone (``*.tmp-<host>-<pid>``).

    A temporary of a live process (another run, a rank still writing) or of another host is kept.
    """
    if not directory.is_dir():
        return []
    return remove_dead_temporaries(list(directory.iterdir()))


def segment_keys(path: Path) -> list[tuple[str, int]]:
    """The keys stored in a segment, from its index only."""
    label = segment_label(path)
    return fmt.read_header(path, label).keys()


class ShardWriter:
    """One rank's output: keyframes go into segments of ``segment_size`` keys each."""

    def __init__(self, directory: Path, *, mode: str, attempt: int, rank: int, segment_size: int,
                 bank_kwargs: dict) -> None:
        self.directory, self.mode = Path(directory), check_mode(mode)
        self.attempt, self.rank, self.segment_size = attempt, rank, segment_size
        self._bank_kwargs = bank_kwargs
        self._writer: BankWriter | None = None
        self._segments: list[SegmentEntry] = []

    def append(self, video_id: str, timestamp: int, features, boxes, scores) -> None:
        if self._writer is None:
            name = segment_name(self.mode, self.attempt, self.rank, len(self._segments))
            self._writer = BankWriter(self.directory / name, **{**self._bank_kwargs, "mode": self.mode})
        self._writer.append(video_id, timestamp, features, boxes, scores)
        if self._writer.num_keys >= self.segment_size:
            self._finish_segment()

    def _finish_segment(self) -> None:
        writer, self._writer = self._writer, None
        if writer is None:
            return
        path = writer.close()
        self._segments.append(SegmentEntry(path.name, writer.num_keys, writer.num_rows))

    def close(self, *, keyframes: int) -> Path:
        """Finish the open segment and write this rank's manifest."""
        self._finish_segment()
        return RankManifest(self.mode, self.attempt, self.rank, keyframes, tuple(self._segments)).write(self.directory)

    def abort(self) -> None:
        if self._writer is not None:
            self._writer.abort()
            self._writer = None


def segments_for_merge(directory: Path, mode: str) -> tuple[list[Path], int]:
    """The ``mode`` segments of a finished run, checked against its records; and the keyframes expected."""
    attempts = list_attempts(directory, mode)
    if not attempts:
        raise LfbError(f"{directory}: no shards to merge for mode {mode} (no attempt record {mode}-a###.json)")
    record = AttemptRecord.read(directory, mode, attempts[-1])
    expected: list[tuple[Path, int, str]] = []
    for item in record.prior_segments:
        path = directory / item.name
        expected.append((path, item.keys, f"{segment_label(path)}, kept from an earlier attempt"))
    for rank in range(record.world_size):
        manifest_file = manifest_path(directory, mode, record.attempt, rank)
        if not manifest_file.is_file():
            raise LfbError(
                f"{directory}: rank {rank} did not finish attempt {record.attempt} (no {manifest_file.name}); "
                "rerun extract with --resume"
            )
        for item in RankManifest.read(directory, mode, record.attempt, rank).segments:
            path = directory / item.name
            expected.append((path, item.keys, segment_label(path)))
    for path, keys, label in expected:
        if not path.is_file():
            raise LfbError(f"{label}: segment is missing")
        header = fmt.read_header(path, label)
        if header.mode != mode:
            raise LfbError(f"{label}: holds mode {header.mode!r} keyframes, expected {mode!r}; not this run's segment")
        if header.num_keys != keys:
            raise LfbError(f"{label}: holds {header.num_keys} keyframes, its record says {keys}; truncated")
    return [p for p, _, _ in expected], record.total_keyframes
