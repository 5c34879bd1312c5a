"""Own videos without an AVA CSV: which videos there are, which seconds of them have a whole clip,
and whether a file's frame rate is constant (seconds are placed by a constant rate).

"A whole clip exists" at second ``t`` when every index of its keyframe clip lies in
``[0, total - 1]`` *before* clipping (:func:`lfbtool.data.sampling.whole_clip`): no frame of the clip
is a repeat of the first or last frame. See docs/own-videos.md.
"""

from __future__ import annotations

import os
import re
from fractions import Fraction
from pathlib import Path

from lfbtool.data.frames import FrameDirectory
from lfbtool.data.sampling import Fps, keyframe_clip_indices
from lfbtool.errors import LfbError

#: Frames whose pts deltas are compared when checking for a variable frame rate.
VFR_PROBE_FRAMES = 48
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


def variable_rate_warning(path: str | os.PathLike[str], probe_frames: int = VFR_PROBE_FRAMES) -> str | None:
    """One line when ``path`` looks variable-frame-rate, else None.

    Signs: the container's average rate differs from the rate its timestamps guess, or the pts
    steps of the first ``probe_frames`` frames are not all equal. Frames are then placed by the
    average rate, so seconds may drift from the file's own timestamps.
    """
    import av

    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                return None
            stream = container.streams.video[0]
            average, guessed = stream.average_rate, stream.guessed_rate
            pts = []
            for packet in container.demux(stream):
                if packet.pts is not None and packet.size > 0:
                    pts.append(packet.pts)
                if len(pts) >= probe_frames:
                    break
    except (av.FFmpegError, OSError):
        return None  # unreadable files fail later with the reader's own error
    steps = {b - a for a, b in zip(sorted(pts), sorted(pts)[1:], strict=False)}
    reasons = []
    if average and guessed and Fraction(average) != Fraction(guessed):
        reasons.append(f"average rate {Fraction(average)} != stream rate {Fraction(guessed)}")
    if len(steps) > 1:
        reasons.append(f"timestamp steps of the first {len(pts)} frames vary ({min(steps)}..{max(steps)})")
    if not reasons:
        return None
    rate = Fraction(average or guessed) if (average or guessed) else None
    return (f"{path}: looks variable-frame-rate ({'; '.join(reasons)}); frames are placed at a constant "
            f"{rate} fps, so seconds may drift: re-encode at a constant rate (ffmpeg -vsync cfr -r RATE)")
