"""How a run names what it writes: the one mode rule and the one part-file naming rule.

A mode (``train``, ``val``, ``test_2``) names a bank (``lfb_{mode}.h5``) and prefixes every file of its
run, so runs of two modes can share a directory. The rule is the strict one: letters, digits and
``_ . +``, no ``-`` (the separator of part names: with ``train-x`` allowed, cleaning mode ``train``
would match ``train-x``'s files). Every command that takes a mode checks it here.

Parts of a run, in its parts directory::

    {name}-a001.json                 attempt record (rank 0, before any rank writes)
    {name}-a001-r00000-s000000{ext}  a part: up to --segment-size items, published by rename
    {name}-a001-r00000.json          rank manifest (each rank, when it finished)
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from lfbtool.errors import SettingError

__all__ = ["MODE_RULE", "PartName", "attempt_name", "check_mode", "manifest_name", "part_name"]

MODE_RULE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+]{0,63}")
_PART = re.compile(r"^(?P<name>[A-Za-z0-9][A-Za-z0-9_.+]*)-a(?P<attempt>\d{3,})-r(?P<rank>\d{5,})-s(?P<seq>\d{6,})"
                   r"(?P<ext>\.[A-Za-z0-9]+)$")
_RECORD = re.compile(r"^(?P<name>[A-Za-z0-9][A-Za-z0-9_.+]*)-a(?P<attempt>\d{3,})(?:-r(?P<rank>\d{5,}))?\.json$")


def check_mode(mode: object, setting: str = "mode") -> str:
    """``mode`` when it is a plain name; otherwise one SettingError naming the setting and the rule
    (the CLI shows it as ``--mode ...``)."""
    if not isinstance(mode, str) or not MODE_RULE.fullmatch(mode):
        raise SettingError(setting, f"must be a plain name of at most 64 letters, digits and _ . + (no '-'), "
                                    f"starting with a letter or digit: it names the files lfb_<mode>.h5 and "
                                    f"<mode>-a001...; got {mode!r}")
    return mode


def part_name(name: str, attempt: int, rank: int, seq: int, ext: str) -> str:
    return f"{name}-a{attempt:03d}-r{rank:05d}-s{seq:06d}{ext}"


def attempt_name(name: str, attempt: int) -> str:
    return f"{name}-a{attempt:03d}.json"


def manifest_name(name: str, attempt: int, rank: int) -> str:
    return f"{name}-a{attempt:03d}-r{rank:05d}.json"


@dataclass(frozen=True)
class PartName:
    """A parsed part file name; ``None`` from :meth:`parse` for any other name."""

    name: str
    attempt: int
    rank: int
    seq: int
    ext: str

    @classmethod
    def parse(cls, path: Path | str) -> PartName | None:
        found = _PART.match(Path(path).name)
        if not found:
            return None
        return cls(found["name"], int(found["attempt"]), int(found["rank"]), int(found["seq"]), found["ext"])

    def label(self, path: Path | str) -> str:
        """How errors name a part: ``train rank 1 segment 3 of attempt 2 (path)``."""
        return f"{self.name} rank {self.rank} segment {self.seq} of attempt {self.attempt} ({path})"


def parse_record(path: Path | str) -> tuple[str, int, int | None] | None:
    """``(name, attempt, rank)`` of an attempt record (rank None) or a rank manifest; else None."""
    found = _RECORD.match(Path(path).name)
    if not found:
        return None
    return found["name"], int(found["attempt"]), None if found["rank"] is None else int(found["rank"])
