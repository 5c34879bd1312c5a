"""The one settings fingerprint and the one "what differs" message of every resumable run.

A run records the settings that decide its output (a flat JSON object: numbers, strings, and small
nested objects such as the content hashes of the input files). Two runs whose fingerprints agree wrote
comparable results; when they do not, :func:`describe_differences` says which settings differ, in
words (``clip_len 4 now, 8 in the earlier run``), never as two hashes.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

__all__ = ["canonical_json", "describe_differences", "differing_settings", "fingerprint"]


def canonical_json(settings: Mapping[str, Any]) -> str:
    """Sorted keys, no spaces: the same settings always give the same text."""
    return json.dumps(dict(settings), sort_keys=True, separators=(",", ":"))


def fingerprint(settings: Mapping[str, Any]) -> str:
    """sha256 of the canonical JSON, 16 hex digits: equal fingerprints mean equal settings."""
    return hashlib.sha256(canonical_json(settings).encode()).hexdigest()[:16]


def _flatten(settings: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for name, value in settings.items():
        if isinstance(value, Mapping):
            flat.update(_flatten(value, f"{prefix}{name}."))
        else:
            flat[f"{prefix}{name}"] = value
    return flat


def differing_settings(ours: Mapping[str, Any], theirs: Mapping[str, Any]) -> list[str]:
    """The (dotted) names of the settings whose values differ, sorted; nested objects compared by field."""
    mine, other = _flatten(ours), _flatten(theirs)
    missing = object()
    return sorted(n for n in set(mine) | set(other) if mine.get(n, missing) != other.get(n, missing))


def _hash_setting(name: str) -> bool:
    leaf = name.rpartition(".")[2]
    return "sha256" in name or leaf == "fingerprint" or leaf.endswith("_hash")


def _words(name: str, ours: Any, theirs: Any, missing: object, now: str, then: str) -> str:
    if _hash_setting(name):  # a content hash: which file changed, not two hex strings
        subject = name.replace("input_sha256.", "").replace("_sha256", "").replace("sha256", "").strip("._")
        subject = subject or "input"
        if ours is missing:
            return f"{subject}: not used {now}, used {then}"
        if theirs is missing:
            return f"{subject}: used {now}, not {then}"
        return f"{subject}: other file content {now} than {then}"
    shown_ours = "not set" if ours is missing else json.dumps(ours)
    shown_theirs = "not set" if theirs is missing else json.dumps(theirs)
    return f"{name} {shown_ours} {now}, {shown_theirs} {then}"


def describe_differences(ours: Mapping[str, Any], theirs: Mapping[str, Any], *, now: str = "now",
                         then: str = "in the earlier run") -> str:
    """``clip_len 4 now, 8 in the earlier run; annotations: other file content now than ...``."""
    mine, other = _flatten(ours), _flatten(theirs)
    missing = object()
    names = differing_settings(ours, theirs)
    if not names:
        return "no setting differs"
    return "; ".join(_words(n, mine.get(n, missing), other.get(n, missing), missing, now, then) for n in names)
