"""The text form of a keyframe key, ``"video_id,0902"``: how MMAction2 writes it and how users name one."""

from __future__ import annotations


def key_text(video_id: str, timestamp: int) -> str:
    """``("vid", 902)`` -> ``"vid,0902"``."""
    return f"{video_id},{int(timestamp):04d}"


#: Longest video id, in UTF-8 bytes: it names a directory or file (most filesystems allow 255).
MAX_VIDEO_ID_BYTES = 200
#: Timestamps are stored as int32 seconds.
TIMESTAMP_RANGE = (-(2**31), 2**31 - 1)


def video_id_problem(video_id: str) -> str | None:
    """Why ``video_id`` cannot name a video under a root (None when it can): it must stay inside the root
    (no absolute path, no ``..``, no NUL or backslash) and fit a file name."""
    if not video_id or not video_id.strip():
        return "is empty"
    if "\0" in video_id or "\\" in video_id:
        return "holds a NUL or backslash"
    parts = video_id.split("/")
    if video_id.startswith("/") or any(part in ("", ".", "..") for part in parts):
        return "leaves its root (absolute path, '.', '..' or an empty path part)"
    if len(video_id.encode("utf-8")) > MAX_VIDEO_ID_BYTES:
        return f"is longer than {MAX_VIDEO_ID_BYTES} bytes"
    return None


def timestamp_problem(timestamp: int) -> str | None:
    """Why ``timestamp`` cannot be stored (None when it can): banks hold int32 seconds."""
    low, high = TIMESTAMP_RANGE
    return None if low <= timestamp <= high else f"timestamp {timestamp} is outside the int32 range of a bank"
