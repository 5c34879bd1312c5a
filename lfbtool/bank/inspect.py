"""What is in a bank file: attributes, counts, boxes-per-keyframe distribution; per-video drill-down.

Returns plain dicts (JSON-ready) so the CLI can print a table or ``--json`` and tests can compare.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from lfbtool.bank.bank_file import BankFile, BankKeyError
from lfbtool.keys import key_text


def _distribution(counts: np.ndarray) -> dict[str, Any]:
    if len(counts) == 0:
        return {"min": 0, "max": 0, "mean": 0.0, "histogram": {}}
    values, freq = np.unique(counts, return_counts=True)
    return {
        "min": int(counts.min()),
        "max": int(counts.max()),
        "mean": round(float(counts.mean()), 4),
        "histogram": {int(v): int(f) for v, f in zip(values, freq, strict=True)},
    }


def _score_range(scores: np.ndarray) -> list[float] | None:
    """Lowest and highest stored score (NaN: unknown, left out); what a threshold claim is checked against."""
    known = scores[~np.isnan(scores)]
    return [round(float(known.min()), 4), round(float(known.max()), 4)] if len(known) else None


def _range(timestamps: np.ndarray) -> list[int] | None:
    return [int(timestamps.min()), int(timestamps.max())] if len(timestamps) else None


def inspect_bank(path: str | Path, *, video: str | None = None) -> dict[str, Any]:
    """Summary of one bank (index only, plus /scores to count unknown scores); ``video`` adds its keys."""
    bank = BankFile(path)
    try:
        attrs = bank.attrs
        try:
            config: Any = json.loads(attrs["config"] or "{}")
        except (TypeError, ValueError):
            config = attrs["config"]
        scores = bank.rows(bank.scores, 0, bank.scores.shape[0])
        summary: dict[str, Any] = {
            "path": str(bank.path),
            "file_size": bank.path.stat().st_size,
            "format": attrs["format"],
            "format_version": int(attrs["format_version"]),
            "feature_dim": bank.feature_dim,
            "dtype": attrs["dtype"],
            "mode": attrs["mode"],
            "videos": len(bank.videos),
            "keyframes": len(bank.timestamps),
            "boxes": int(bank.key_row_offsets[-1]),
            "boxes_without_score": int(np.isnan(scores).sum()),
            "score_range": _score_range(scores),
            "boxes_per_keyframe": _distribution(np.diff(bank.key_row_offsets)),
            "timestamp_range": _range(bank.timestamps),
            "config_fingerprint": attrs["config_fingerprint"],
            "checkpoint_sha256": attrs["checkpoint_sha256"],
            "created_by": attrs["created_by"],
            "config": config,
        }
        if video is not None:
            summary["video"] = _video_detail(bank, video, scores)
        return summary
    finally:
        bank.close()


def _video_detail(bank: BankFile, video: str, scores: np.ndarray) -> dict[str, Any]:
    if video not in bank.video_index:
        raise BankKeyError(f"video {video!r} is not in bank {bank.path}")
    k0, k1 = bank.key_range(video)
    offsets = bank.key_row_offsets[k0 : k1 + 1]
    times = bank.timestamps[k0:k1]
    keys = []
    for ts, r0, r1 in zip(times.tolist(), offsets[:-1].tolist(), offsets[1:].tolist(), strict=True):
        known = scores[r0:r1][~np.isnan(scores[r0:r1])]
        keys.append(
            {
                "key": key_text(video, ts),
                "timestamp": ts,
                "boxes": r1 - r0,
                "min_score": round(float(known.min()), 4) if len(known) else None,
                "max_score": round(float(known.max()), 4) if len(known) else None,
            }
        )
    return {
        "video_id": video,
        "keyframes": int(k1 - k0),
        "boxes": int(offsets[-1] - offsets[0]),
        "boxes_per_keyframe": _distribution(np.diff(offsets)),
        "timestamp_range": _range(times),
        "keys": keys,
    }
