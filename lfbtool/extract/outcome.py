"""What an extraction's summary says beyond counts: which input videos gave no keyframe, and why.

A video the inputs name can end with no keyframe in the bank: every key of it lacked proposals,
had its centre frame past the end, had nobody detected, or (every-second) the video is too short
for one whole clip. The summary says so (``videos 1 of 3 (2 gave no keyframe: ...)``), never a
bare count that leaves the user to find the missing ones. No keyframe at all is an error
(:func:`nothing_to_extract`), raised before anything is written.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable

from lfbtool.data.ava import Keyframe, Skipped
from lfbtool.errors import LfbError
from lfbtool.runtime.console import some

#: Reasons, and videos per reason, named in the one summary line; the rest are counted.
SHOWN_REASONS = 3
SHOWN_VIDEOS = 3


def videos_without_keyframes(keyframes: Iterable[Keyframe], skipped: Iterable[Skipped], listed: Iterable[str] = (),
                             *, no_clip: str = "too short for one whole clip") -> tuple[int, dict[str, str]]:
    """How many videos the inputs name (those with a keyframe, a skipped key, or ``listed``: the
    videos every-second looked at), and for each one left without a keyframe, why."""
    kept = {keyframe.video_id for keyframe in keyframes}
    reasons: dict[str, list[str]] = defaultdict(list)
    for item in skipped:
        if item.video_id not in kept and item.reason not in reasons[item.video_id]:
            reasons[item.video_id].append(item.reason)
    named = kept | set(reasons) | set(listed)
    why = {video: ", ".join(reasons[video]) if reasons.get(video) else no_clip for video in sorted(named - kept)}
    return len(named), why


def no_keyframe_text(why: dict[str, str]) -> str:
    """``2 gave no keyframe: no proposals (vid_b, vid_c)``: grouped by reason, lists cut with ``+N more``."""
    by_reason: dict[str, list[str]] = defaultdict(list)
    for video, reason in why.items():
        by_reason[reason].append(video)
    groups = [f"{reason} ({some(videos, SHOWN_VIDEOS)})"
              for reason, videos in sorted(by_reason.items(), key=lambda item: (-len(item[1]), item[0]))]
    more = len(groups) - SHOWN_REASONS
    text = "; ".join(groups[:SHOWN_REASONS]) + (f"; +{more} more reasons" if more > 0 else "")
    return f"{len(why)} gave no keyframe: {text}"


def nothing_to_extract(source: object, out: object, *, listed: int, excluded: int = 0, excluded_path: object = None,
                       skipped: Iterable[Skipped] = (), all_ranks: bool = False) -> LfbError:
    """No keyframe left at all: one line naming the keyframe ``source`` and why each of its ``listed``
    keys was left out. Raised before anything is written into ``out`` (no lock, no attempt record),
    so the corrected rerun needs no --resume."""
    skipped = list(skipped)
    if listed == 0:
        why = "it lists no keys"
    else:
        reasons = Counter(item.reason for item in skipped)
        left_out = ([f"{excluded} in --excluded {excluded_path}"] if excluded else []) + [
            f"{count} {reason}" for reason, count in sorted(reasons.items())]
        why = f"all {listed} keys were left out ({', '.join(left_out)})"
    if any(item.reason == "no proposals" for item in skipped):
        why += "; --whole-frame-fallback keeps keys without proposals"
    return LfbError(f"{source}: no keyframes to extract: {why}; nothing was written to {out}", all_ranks=all_ranks)
