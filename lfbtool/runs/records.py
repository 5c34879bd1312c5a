"""The two JSON records that make a run's parts checkable: the attempt record and the rank manifests.

The attempt record is written by rank 0 before any rank writes a part: which attempt this is, how many
ranks, how many items the run must produce, its settings and their fingerprint, and the parts earlier
attempts left (kept as done). Each rank writes its manifest when it finished: the parts it published
and how many items each holds. Assembly trusts nothing else: a part a record names must exist and hold
what the record says.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from lfbtool._io.atomic import write_json_atomic
from lfbtool.errors import LfbError
from lfbtool.runs.naming import attempt_name, manifest_name

__all__ = ["AttemptRecord", "PartEntry", "RankManifest", "read_json_object"]


@dataclass(frozen=True)
class PartEntry:
    """A published part as the records name it: file name, items, rows (-1: not counted)."""

    name: str
    keys: int
    rows: int = -1


@dataclass(frozen=True)
class AttemptRecord:
    """``{name}-a###.json``: what this attempt must produce, with what settings."""

    mode: str
    attempt: int
    world_size: int
    total_keyframes: int
    config_fingerprint: str = ""
    settings: dict[str, Any] = field(default_factory=dict)
    prior_segments: tuple[PartEntry, ...] = ()

    @staticmethod
    def path(directory: Path, name: str, attempt: int) -> Path:
        return Path(directory) / attempt_name(name, attempt)

    def write(self, directory: Path) -> Path:
        return write_json_atomic(self.path(directory, self.mode, self.attempt), asdict(self))

    @classmethod
    def read(cls, directory: Path, name: str, attempt: int) -> AttemptRecord:
        path = cls.path(directory, name, attempt)
        data = read_json_object(path, f"attempt {attempt} record")
        try:
            prior = tuple(PartEntry(**item) for item in data.pop("prior_segments", []))
            record = cls(prior_segments=prior, **data)
        except TypeError as error:
            raise LfbError(f"{path}: attempt {attempt} record is not one lfbtool wrote ({error})") from None
        if not isinstance(record.settings, dict) or not isinstance(record.world_size, int) or record.world_size < 1:
            raise LfbError(f"{path}: attempt {attempt} record is not one lfbtool wrote (bad settings or world_size)")
        return record


@dataclass(frozen=True)
class RankManifest:
    """``{name}-a###-r#####.json``: the parts one rank published in one attempt."""

    mode: str
    attempt: int
    rank: int
    keyframes: int
    segments: tuple[PartEntry, ...]
    complete: bool = True

    @staticmethod
    def path(directory: Path, name: str, attempt: int, rank: int) -> Path:
        return Path(directory) / manifest_name(name, attempt, rank)

    def write(self, directory: Path) -> Path:
        return write_json_atomic(self.path(directory, self.mode, self.attempt, self.rank), asdict(self))

    @classmethod
    def read(cls, directory: Path, name: str, attempt: int, rank: int) -> RankManifest:
        path = cls.path(directory, name, attempt, rank)
        data = read_json_object(path, f"rank {rank} manifest")
        try:
            segments = tuple(PartEntry(**item) for item in data.pop("segments"))
            return cls(segments=segments, **data)
        except (TypeError, KeyError) as error:
            raise LfbError(f"{path}: rank {rank} manifest is not one lfbtool wrote ({error})") from None


def read_json_object(path: Path, what: str) -> dict[str, Any]:
    """A JSON object from ``path``; missing, unreadable or not an object: one LfbError naming ``what``."""
    try:
        data = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise LfbError(f"{path}: {what} is missing") from None
    except (json.JSONDecodeError, OSError, UnicodeDecodeError) as error:
        raise LfbError(f"{path}: {what} is unreadable ({error})") from None
    if not isinstance(data, dict):
        raise LfbError(f"{path}: {what} is not a JSON object")
    return data
