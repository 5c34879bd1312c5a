"""The text form of a keyframe key, ``"video_id,0902"``: how MMAction2 writes it and how users name one."""

from __future__ import annotations


def key_text(video_id: str, timestamp: int) -> str:
    """``("vid", 902)`` -> ``"vid,0902"``."""
    return f"{video_id},{int(timestamp):04d}"
