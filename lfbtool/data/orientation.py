"""Display orientation of a video file: the rotation or mirror a player applies before showing it.

Phones store a portrait video as landscape pictures plus a display matrix (side data; older
files: a ``rotate`` tag). Players and ``ffmpeg`` (so frame directories extracted with it) show it
upright; :class:`lfbtool.data.frames.VideoFile` applies the same transform, so a video and its
extracted frames give the same pictures and boxes. The rule is FFmpeg's command-line autorotate
(``get_rotation`` in fftools' cmdutils.c and the transposes in ffmpeg_filter.c), for right angles
with or without a mirror; another angle is refused in one line.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Mapping, Sequence
from typing import Any

from lfbtool.errors import LfbError

#: Steps applied in order to an ``[H, W, C]`` picture; FFmpeg filter names (``transpose=`` values).
Transform = tuple[str, ...]
UPRIGHT: Transform = ()


def rotation_degrees(matrix: Sequence[int]) -> float:
    """``av_display_rotation_get``: the counter-clockwise rotation of a 16.16 display matrix
    ``(a, b, u, c, d, v, x, y, w)``; NaN when it is singular."""
    scale0 = math.hypot(matrix[0], matrix[3])
    scale1 = math.hypot(matrix[1], matrix[4])
    if scale0 == 0 or scale1 == 0:
        return math.nan
    return -math.degrees(math.atan2(matrix[1] / scale1, matrix[0] / scale0))


def display_transform(matrix: Sequence[int] | None, rotate_tag: str | None = None, *, where: str = "") -> Transform:
    """The steps that show a picture as players do, from its display matrix, else from a
    ``rotate`` tag (clockwise degrees, no mirror). Raises LfbError for an angle that is not a
    multiple of 90 degrees, or a matrix that is no rotation."""
    if matrix is not None:
        if len(matrix) != 9 or math.isnan(rotation_degrees(matrix)):
            raise LfbError(f"{where}: display matrix {list(matrix)} is not a rotation; re-encode the video upright")
        theta = -float(round(rotation_degrees(matrix)))  # fftools get_rotation: clockwise degrees
    elif rotate_tag:
        try:
            theta = float(rotate_tag)
        except ValueError:
            theta = math.nan
        if not math.isfinite(theta):
            raise LfbError(f"{where}: rotate tag {rotate_tag!r} is not a number of degrees")
    else:
        return UPRIGHT
    theta -= 360 * math.floor(theta / 360 + 0.9 / 360)  # into [0, 360), as FFmpeg does
    if matrix is None:  # a pure rotation
        for angle, steps in ((0, UPRIGHT), (90, ("clock",)), (180, ("hflip", "vflip")), (270, ("cclock",)),
                             (360, UPRIGHT)):
            if abs(theta - angle) < 1:
                return steps
    elif abs(theta - 90) < 1:
        return ("cclock_flip",) if matrix[3] > 0 else ("clock",)
    elif abs(theta - 270) < 1:
        return ("clock_flip",) if matrix[3] < 0 else ("cclock",)
    elif abs(theta - 180) < 1:
        return tuple(step for step, flip in (("hflip", matrix[0] < 0), ("vflip", matrix[4] < 0)) if flip)
    elif abs(theta) < 1 or abs(theta - 360) < 1:
        return ("vflip",) if matrix[4] < 0 else UPRIGHT
    raise LfbError(f"{where}: the video is shown rotated by {theta:g} degrees clockwise, not a multiple of 90; "
                   "re-encode it upright (ffmpeg -i IN OUT applies the rotation)")


def frame_transform(frame: Any, metadata: Mapping[str, str], *, where: str) -> Transform:
    """The display transform of a decoded PyAV frame: its display-matrix side data, else the
    stream's ``rotate`` tag (FFmpeg builds before 7 exported that instead)."""
    matrix = None
    side_data = getattr(frame, "side_data", None)
    if side_data is not None:
        import av.sidedata.sidedata as sidedata

        entry = side_data.get(sidedata.Type.DISPLAYMATRIX)
        raw = bytes(entry) if entry is not None else b""
        if len(raw) >= 36:
            matrix = list(struct.unpack("=9i", raw[:36]))  # native-endian int32, as FFmpeg stores it
    return display_transform(matrix, metadata.get("rotate"), where=where)


def apply_transform(picture: Any, steps: Transform) -> Any:
    """Apply ``steps`` to an ``[H, W, C]`` tensor (torch or anything with rot90/flip/transpose)."""
    for step in steps:
        if step == "clock":
            picture = picture.rot90(-1, (0, 1))
        elif step == "cclock":
            picture = picture.rot90(1, (0, 1))
        elif step == "cclock_flip":  # rotate counter-clockwise, then flip vertically: a transpose
            picture = picture.transpose(0, 1)
        elif step == "clock_flip":  # rotate clockwise, then flip vertically
            picture = picture.rot90(-1, (0, 1)).flip(0)
        elif step == "hflip":
            picture = picture.flip(1)
        elif step == "vflip":
            picture = picture.flip(0)
        else:
            raise ValueError(f"unknown display step {step!r}")
    return picture.contiguous() if steps else picture


__all__ = ["UPRIGHT", "Transform", "apply_transform", "display_transform", "frame_transform", "rotation_degrees"]
