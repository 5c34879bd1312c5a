"""Own videos without an AVA CSV: which videos there are, which seconds of them have a whole clip,
and whether a file's frame rate is constant (seconds are placed by a constant rate).

"A whole clip exists" at second ``t`` when every index of its keyframe clip lies in
``[0, total - 1]`` *before* clipping (:func:`lfbtool.data.sampling.whole_clip`): no frame of the clip
is a repeat of the first or last frame. See docs/own-videos.md.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path

from lfbtool.data.frames import FrameDirectory
from lfbtool.data.sampling import Fps, keyframe_clip_indices
from lfbtool.errors import LfbError

#: Frames (in display order) whose timestamps are checked for a variable frame rate.
VFR_PROBE_FRAMES = 300
#: Packets read beyond those: decode order runs ahead of display order by the codec's reorder
#: delay (at most 16 frames in H.264/HEVC), so the first VFR_PROBE_FRAMES frames are all read.
_REORDER_MARGIN = 32
_ID = re.compile(r"^[^,\s]+$")


def _check_id(video_id: str, where: str) -> str:
    if not _ID.match(video_id):
        raise LfbError(f"{where}: video id {video_id!r} must be non-empty without commas or spaces "
                       "(it becomes part of the key 'video_id,0002')")
    return video_id


def read_video_list(path: str | os.PathLike[str]) -> list[str]:
    """A text file of video ids, one a line (blank lines and ``#`` comments ignored), in file order."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8-sig").splitlines()
    except FileNotFoundError:
        raise LfbError(f"{path}: no such file (video list)") from None
    except (OSError, UnicodeDecodeError) as error:
        raise LfbError(f"{path}: cannot read the video list ({error})") from None
    ids: list[str] = []
    for number, line in enumerate(lines, start=1):
        text = line.split("#", 1)[0].strip()
        if text:
            ids.append(_check_id(text, f"{path}: row {number}"))
    if not ids:
        raise LfbError(f"{path}: the video list names no video")
    return ids


def chosen_videos(video_list: str | os.PathLike[str] | None, *, frames_root: str | os.PathLike[str] | None = None,
                  videos_root: str | os.PathLike[str] | None = None, template: str = "img_{:05d}.jpg",
                  video_ext: str = "mp4") -> list[str]:
    """The videos an every-second run looks at: those of ``--video-list``, else every video found."""
    if video_list is not None:
        return read_video_list(video_list)
    return list_videos(frames_root=frames_root, videos_root=videos_root, template=template, video_ext=video_ext)


def list_videos(
    *,
    frames_root: str | os.PathLike[str] | None = None,
    videos_root: str | os.PathLike[str] | None = None,
    template: str = "img_{:05d}.jpg",
    video_ext: str = "mp4",
) -> list[str]:
    """Sorted video ids found under the roots: ``videos_root/<id>.<ext>`` files and
    ``frames_root/<id>/`` directories holding at least one file named by ``template``."""
    ids: set[str] = set()
    if videos_root is not None:
        root = Path(videos_root)
        if not root.is_dir():
            raise LfbError(f"{root}: no such videos directory (--videos-root)")
        suffix = "." + video_ext.lstrip(".")
        ids.update(p.name[: -len(suffix)] for p in root.iterdir() if p.is_file() and p.name.endswith(suffix)
                   and len(p.name) > len(suffix))
    if frames_root is not None:
        root = Path(frames_root)
        if not root.is_dir():
            raise LfbError(f"{root}: no such frames directory (--frames-root)")
        ids.update(d.name for d in root.iterdir() if d.is_dir() and FrameDirectory(d, template=template).count_frames())
    for video_id in ids:
        _check_id(video_id, str(videos_root or frames_root))
    if not ids:
        where = " or ".join(str(r) for r in (videos_root, frames_root) if r is not None)
        raise LfbError(f"{where}: no videos found (expected <id>.{video_ext.lstrip('.')} files or <id>/ frame "
                       f"directories named like {template})")
    return sorted(ids)


def whole_clip_seconds(
    total: int, *, fps: Fps, timestamp_start: int, start_index: int, clip_len: int, interval: int,
    stride: int = 1,
) -> list[int]:
    """Seconds ``t = timestamp_start + k * stride`` (k = 0, 1, ...) of a ``total``-frame video whose
    keyframe clip is whole (all indices in ``[0, total - 1]`` before clipping), ascending."""
    if stride < 1:
        raise LfbError(f"stride must be >= 1, got {stride}")
    if total < 1:
        return []
    seconds = []
    t = timestamp_start
    while True:
        inds = keyframe_clip_indices(t, fps=fps, timestamp_start=timestamp_start, start_index=start_index,
                                     clip_len=clip_len, interval=interval)
        if inds[-1] > total - 1:  # indices grow with t: no later second fits either
            return seconds
        if inds[0] >= 0:
            seconds.append(t)
        t += stride


def timestamp_problems(pts: Sequence[int], time_base: Fraction, rate: Fraction, *,
                       other_rate: Fraction | None = None, total_frames: int = 0) -> list[str]:
    """Why frames placed at a constant ``rate`` would sit elsewhere than their own timestamps.

    ``pts`` are the first frames' presentation timestamps in ``time_base`` units, any order (they
    are judged in display order). Reported: uneven spacing, a frame straying from the even spacing
    of the first to the last frame by more than a tenth of a frame (and 2 ticks, so rounding to the
    time base never counts; phone-camera jitter stays within it); a frame whose pts puts it half a
    frame or more away from its place at ``rate`` (a gap, a repeat, another rate); ``other_rate``
    (the stream's own guess) differing from ``rate`` by half a frame or more over ``total_frames``.
    """
    reasons = []
    if other_rate and rate != other_rate and total_frames * abs(rate - other_rate) / other_rate >= Fraction(1, 2):
        reasons.append(f"average rate {rate} != stream rate {other_rate}")
    ordered = sorted(pts)
    if len(ordered) < 3:
        return reasons
    steps = [b - a for a, b in zip(ordered, ordered[1:], strict=False)]
    spacing = Fraction(ordered[-1] - ordered[0], len(ordered) - 1)
    stray = max(abs(value - ordered[0] - k * spacing) for k, value in enumerate(ordered))
    ms = 1000 * time_base
    if stray > max(2, spacing / 10):
        reasons.append(f"timestamp steps of the first {len(ordered)} frames vary "
                       f"({float(min(steps) * ms):.4g}..{float(max(steps) * ms):.4g} ms)")
    frame = 1 / (rate * time_base)  # one frame at ``rate``, in ticks
    for k, value in enumerate(ordered):
        if abs((value - ordered[0]) - k * frame) >= frame / 2:
            reasons.append(f"frame {k} is at {float((value - ordered[0]) * time_base):.4g} s, "
                           f"{rate} fps puts it at {float(k / rate):.4g} s")
            break
    return reasons


def variable_rate_warning(path: str | os.PathLike[str], probe_frames: int = VFR_PROBE_FRAMES) -> str | None:
    """One line when ``path`` looks variable-frame-rate, else None (see :func:`timestamp_problems`).

    Reads packets only (no decoding) and judges the first ``probe_frames`` frames in display
    order: packets come in decode order, where B-frames are reordered, so ``_REORDER_MARGIN``
    more packets are read and their pts sorted before the first ``probe_frames`` are taken.
    """
    import av

    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                return None
            stream = container.streams.video[0]
            average, guessed = stream.average_rate, stream.guessed_rate
            time_base, total = stream.time_base, int(stream.frames or 0)
            wanted = probe_frames + _REORDER_MARGIN + int(stream.codec_context.has_b_frames or 0)
            pts: list[int] = []
            for packet in container.demux(stream):
                if packet.pts is not None and packet.size > 0:
                    pts.append(packet.pts)
                    if len(pts) >= wanted:
                        break
    except (av.FFmpegError, OSError):
        return None  # unreadable files fail later with the reader's own error
    rate = Fraction(average or guessed) if (average or guessed) else None
    if rate is None or not time_base:
        return None  # the reader refuses a stream without a rate
    shown = sorted(pts)[:probe_frames]
    reasons = timestamp_problems(shown, Fraction(time_base), rate,
                                 other_rate=Fraction(guessed) if guessed else None,
                                 total_frames=max(total, len(pts)))
    if not reasons:
        return None
    return (f"{path}: looks variable-frame-rate ({'; '.join(reasons)}); frames are placed at a constant "
            f"{rate} fps, so seconds may drift: re-encode at a constant rate "
            "(ffmpeg -i IN -fps_mode cfr -r RATE OUT)")
