"""Which frame numbers a clip reads, and where test crops lie, as MMAction2 computes them.

Frame *numbers* are what the readers take: file numbers of a frame directory (``img_00001.jpg`` is
1 with ``start_index=1``); for a video, number ``n`` is the ``(n - start_index)``-th decoded frame.
"""

from __future__ import annotations

import math
from fractions import Fraction
from typing import Literal

import numpy as np

from lfbtool.errors import LfbError

CropMode = Literal["center", "three", "ten"]


Fps = int | Fraction


#: The largest frame rate, and the largest denominator of one (six decimals): beyond any camera, and it
#: keeps frame numbers (fps x seconds) far inside int64 (``--fps 1e400`` is an exact Fraction too).
MAX_FPS = 10**6


def parse_fps(text: str | int | float | Fraction) -> Fraction | Literal["auto"]:
    """``"30"``, ``"29.97"``, ``"30000/1001"`` -> an exact positive Fraction; ``"auto"`` stays ``"auto"``
    (video files: the stream's own rate). ``29.97`` is the decimal 2997/100, not 30000/1001."""
    if isinstance(text, str) and text.strip().lower() == "auto":
        return "auto"
    try:
        value = Fraction(str(text).strip()) if not isinstance(text, Fraction) else text
    except (ValueError, ZeroDivisionError):
        raise LfbError(f"fps {text!r} is not a frame rate; give a number (30, 29.97), a ratio "
                       "(30000/1001) or auto") from None
    if value <= 0:
        raise LfbError(f"fps must be positive, got {text!r}")
    if value > MAX_FPS or value.denominator > MAX_FPS:
        raise LfbError(f"fps {text!r} is out of range: at most {MAX_FPS} frames per second, with at most 6 decimals "
                       f"or a ratio whose denominator is at most {MAX_FPS} (30000/1001)")
    return value


def centre_index(timestamp: int, *, fps: Fps, timestamp_start: int) -> int:
    """0-based frame position of second ``timestamp``: ``fps * (timestamp - timestamp_start)`` in exact
    rational arithmetic, rounded half up (a tie, possible only for rates with a half, goes to the later
    frame). Whole rates give the product itself, MMAction2's integer formula."""
    exact = Fraction(fps) * (int(timestamp) - int(timestamp_start))
    return math.floor(exact + Fraction(1, 2))


def keyframe_clip_indices(
    timestamp: int, *, fps: Fps, timestamp_start: int, start_index: int, clip_len: int, interval: int
) -> np.ndarray:
    """The clip's indices before clipping and before ``start_index`` is added a second time."""
    if clip_len < 1 or interval < 1:
        raise ValueError(f"clip_len and interval must be >= 1, got {clip_len} and {interval}")
    center = centre_index(timestamp, fps=fps, timestamp_start=timestamp_start) + start_index
    start = center - (clip_len // 2) * interval
    end = center + ((clip_len + 1) // 2) * interval
    return np.arange(start, end, interval, dtype=np.int64)


def keyframe_clip_numbers(
    timestamp: int,
    *,
    fps: Fps,
    timestamp_start: int,
    start_index: int,
    clip_len: int,
    interval: int,
    total: int,
) -> np.ndarray:
    """Frame numbers of the clip centred on a keyframe (``SampleAVAFrames``, test mode).

    ``start_index`` enters twice, once in the centre and once added at the end, as in MMAction2;
    AVA (fps 30, start 900, start_index 1), clip 4 x 16, timestamp 902 -> ``[30, 46, 62, 78]``.
    Indices are clipped to ``[0, total - 1]`` before ``start_index`` is added. A non-integer ``fps``
    places the centre with :func:`centre_index`.
    """
    if total < 1:
        raise ValueError(f"total must be >= 1, got {total}")
    inds = keyframe_clip_indices(timestamp, fps=fps, timestamp_start=timestamp_start, start_index=start_index,
                                 clip_len=clip_len, interval=interval)
    return np.clip(inds, 0, total - 1) + start_index


def keyframe_frame_number(timestamp: int, *, fps: Fps, timestamp_start: int, start_index: int, total: int) -> int:
    """The frame number of the keyframe image itself: the centre of its clip (a clip of one frame)."""
    return int(keyframe_clip_numbers(timestamp, fps=fps, timestamp_start=timestamp_start, start_index=start_index,
                                     clip_len=1, interval=1, total=total)[0])


def whole_clip(timestamp: int, *, fps: Fps, timestamp_start: int, start_index: int, clip_len: int,
               interval: int, total: int) -> bool:
    """True when every clip index lies in ``[0, total - 1]`` before clipping (no frame repeated)."""
    inds = keyframe_clip_indices(timestamp, fps=fps, timestamp_start=timestamp_start, start_index=start_index,
                                 clip_len=clip_len, interval=interval)
    return bool(inds[0] >= 0 and inds[-1] <= total - 1)


def test_clip_numbers(
    total: int, *, clip_len: int, interval: int, num_clips: int, start_index: int
) -> np.ndarray:
    """Frame numbers ``[num_clips, clip_len]`` of a recognizer's test views (``SampleFrames``).

    3D (clip_len > 1): clips spread evenly over ``max_offset = max(total - span, 0)``, indices
    wrap modulo ``total`` (MMAction2's 'loop'). 2D (clip_len == 1): one frame in the middle of
    each of ``num_clips`` equal segments.
    """
    if total < 1 or clip_len < 1 or interval < 1 or num_clips < 1:
        raise ValueError(
            f"total, clip_len, interval, num_clips must be >= 1, got {total}, {clip_len}, {interval}, {num_clips}"
        )
    if clip_len == 1:
        avg = total / num_clips
        offsets = (np.arange(num_clips) * avg + avg / 2.0).astype(np.int64)
    else:
        span = (clip_len - 1) * interval + 1
        max_offset = max(total - span, 0)
        if num_clips > 1:
            offsets = np.round(np.arange(num_clips) * (max_offset / (num_clips - 1))).astype(np.int64)
        else:
            offsets = np.array([max_offset // 2], dtype=np.int64)
    inds = offsets[:, None] + np.arange(clip_len, dtype=np.int64)[None, :] * interval
    return np.mod(inds, total) + start_index


def crop_windows(height: int, width: int, crop_size: int, mode: CropMode) -> list[tuple[int, int, int, int, bool]]:
    """Crop windows ``(x1, y1, x2, y2, flipped)`` of a test view, in MMAction2's order.

    ``center``: one centred window. ``three``: left/top, right/bottom, middle along the long side
    (the window spans the short side). ``ten``: upper-left, upper-right, lower-left, lower-right,
    centre, each followed by its horizontal flip.
    """
    cw = ch = int(crop_size)
    if cw > width or ch > height:
        raise ValueError(f"crop {crop_size} larger than frame {height}x{width}")
    if mode == "center":
        x, y = (width - cw) // 2, (height - ch) // 2
        return [(x, y, x + cw, y + ch, False)]
    if mode == "three":
        if ch == height:
            step = (width - cw) // 2
            offsets = [(0, 0), (2 * step, 0), (step, 0)]
        elif cw == width:
            step = (height - ch) // 2
            offsets = [(0, 0), (0, 2 * step), (0, step)]
        else:
            raise ValueError(f"three crops need the crop ({crop_size}) to span the short side of {height}x{width}")
        return [(x, y, x + cw, y + ch, False) for x, y in offsets]
    if mode == "ten":
        ws, hs = (width - cw) // 4, (height - ch) // 4
        offsets = [(0, 0), (4 * ws, 0), (0, 4 * hs), (4 * ws, 4 * hs), (2 * ws, 2 * hs)]
        return [(x, y, x + cw, y + ch, flip) for x, y in offsets for flip in (False, True)]
    raise ValueError(f"unknown crop mode {mode!r}; expected center, three or ten")


test_clip_numbers.__test__ = False  # type: ignore[attr-defined]  # not a pytest test despite its name
