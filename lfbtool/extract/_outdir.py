"""Rank 0's start of an extraction in OUT: refuse or clean earlier results, plan the attempt, record it.

Rank 0 holds OUT's :class:`~lfbtool._io.lock.RunLock` while it calls this, so no other run is writing
there. ``--resume`` keeps every keyframe stored in a complete segment whose settings match this run's; the
plan (attempt number, keys already done) is what rank 0 broadcasts to the other ranks.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lfbtool._io.lock import remove_dead_temporaries
from lfbtool.bank import format as fmt
from lfbtool.errors import LfbError
from lfbtool.extract import _segments as shards
from lfbtool.extract.config import describe_differences, fingerprint, resume_settings


@dataclass(frozen=True)
class RunPlan:
    """What this attempt does: nothing (the bank exists), or the keys other attempts already stored."""

    complete: bool
    attempt: int = 0
    done: tuple[fmt.Key, ...] = ()


def _check_writable(out: Path, directory: Path) -> None:
    try:
        directory.mkdir(parents=True, exist_ok=True)
        probe = directory / f".write-test-{socket.gethostname()}"
        probe.write_text("ok")
        probe.unlink()
    except OSError as error:
        raise LfbError(f"{out}: output directory is not writable ({error.strerror or error})") from None


def _refuse_other_settings(label: str, config_json: str, wanted: dict[str, Any]) -> None:
    existing = resume_settings(json.loads(config_json or "{}"))
    if existing != wanted:
        raise LfbError(f"{label}: refusing to resume with other settings: {describe_differences(wanted, existing)}")


def prepare_output(out: Path, mode: str, resolved: dict[str, Any], world_size: int, keys: Iterable[fmt.Key], *,
                   resume: bool, overwrite: bool) -> RunPlan:
    """Check and clean OUT, choose the attempt number, record what earlier attempts left."""
    out, directory = Path(out), shards.shards_dir(out)
    bank = fmt.bank_path(out, mode)
    _check_writable(out, directory)
    if overwrite:  # this mode's results only: another mode's shards in OUT are not ours to delete
        for path in directory.iterdir():
            if path.name.startswith(f"{mode}-"):
                path.unlink()
        bank.unlink(missing_ok=True)
    segments = shards.list_segments(directory, mode)
    attempts = shards.list_attempts(directory, mode)
    if not resume and (segments or attempts or bank.exists()):
        found = f"{bank.name}" if bank.exists() else f"{len(segments)} segments in {directory}"
        raise LfbError(
            f"{out}: holds results of an earlier run ({found}); pass --resume to continue it "
            "or --overwrite to start over"
        )
    remove_dead_temporaries(list(out.glob(f"{bank.name}.tmp-*")))  # a merge killed before its rename
    wanted = resume_settings(resolved)
    if bank.exists():
        _refuse_other_settings(str(bank), fmt.read_header(bank).attrs["config"], wanted)
        return RunPlan(complete=True)
    shards.remove_temporaries(directory)
    done: set[fmt.Key] = set()
    prior = []
    for path in segments:
        label = shards.segment_label(path)
        header = fmt.read_header(path, label)
        _refuse_other_settings(label, header.attrs["config"], wanted)
        done.update(header.keys())
        prior.append(shards.SegmentEntry(path.name, header.num_keys))
    attempt = (attempts[-1] if attempts else 0) + 1
    wanted_keys = set(keys)
    shards.AttemptRecord(
        mode=mode, attempt=attempt, world_size=world_size, total_keyframes=len(wanted_keys),
        config_fingerprint=fingerprint(resolved), settings=wanted, prior_segments=tuple(prior),
    ).write(directory)
    return RunPlan(complete=False, attempt=attempt, done=tuple(sorted(done & wanted_keys)))
