"""The keyframe image of a key, by the rule ``detect`` and ``extract`` use: the centre frame of its clip
(:func:`lfbtool.data.sampling.keyframe_frame_number`), read with the same frame readers.

The readers decode through torchvision (frame directories) and PyAV (videos): reading frames imports
torch. That is deliberate: a picture shows exactly the pixels the boxes and features were computed
on, not a second decoder's idea of them. Drawing without frames (``show`` strips) needs no torch.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from lfbtool.errors import LfbError
from lfbtool.keys import key_text

if TYPE_CHECKING:
    from fractions import Fraction

    from lfbtool.data.clips import ClipSettings

Key = tuple[str, int]


def bank_sampling(config_text: str | None, where: str) -> dict[str, Any]:
    """The sampling settings a bank's ``config`` attribute records (a merged bank: its first input's;
    merged inputs share them, their fingerprints agree); ``{}`` for a bank imported from MMAction2."""
    try:
        config = json.loads(config_text or "{}")
    except ValueError:
        raise LfbError(f"{where}: the bank's config attribute is not JSON") from None
    if not isinstance(config, dict):
        return {}
    merged = config.get("merged_from")
    if isinstance(merged, list) and merged and isinstance(merged[0], dict):
        config = merged[0].get("config") or {}
    names = ("fps", "timestamp_start", "start_index", "frame_template", "video_ext")
    return {name: config[name] for name in names if config.get(name) is not None}


def clip_settings(recorded: dict[str, Any], where: str, *, frames_root: Path | None, videos_root: Path | None,
                  fps: str | None = None, timestamp_start: int | None = None, start_index: int | None = None,
                  frame_template: str | None = None, video_ext: str | None = None) -> ClipSettings:
    """Where keyframe images come from: the options given, else what the bank recorded; a bank that
    records no frame rate or first second (imported from MMAction2) needs ``--fps`` and ``--timestamp-start``."""
    from lfbtool.data.clips import ClipSettings
    from lfbtool.data.sampling import parse_fps
    from lfbtool.extract.config import check_frame_template

    given = {"fps": fps, "timestamp_start": timestamp_start, "start_index": start_index,
             "frame_template": frame_template, "video_ext": video_ext}
    values = {**recorded, **{k: v for k, v in given.items() if v is not None}}
    missing = [name for name in ("fps", "timestamp_start") if name not in values]
    if missing:
        options = " and ".join(f"--{name.replace('_', '-')}" for name in missing)
        raise LfbError(f"{where}: the bank records no {' or '.join(missing)} (imported from MMAction2?); "
                       f"give {options} to place its keyframes in the frames")
    template = str(values.get("frame_template", "img_{:05d}.jpg"))
    check_frame_template(template)
    return ClipSettings(
        frames_root=frames_root, videos_root=videos_root, frame_template=template,
        video_ext=str(values.get("video_ext", "mp4")), fps=parse_fps(values["fps"]),
        timestamp_start=int(values["timestamp_start"]), start_index=int(values.get("start_index", 1)),
        clip_len=1, frame_interval=1, short_side=1,  # one frame, read whole
    )


def read_keyframes(video: str, timestamps: list[int], settings: ClipSettings,
                   ) -> tuple[Fraction | int, Iterator[tuple[int, int, np.ndarray]]]:
    """The frame rate placing seconds in ``video``, and ``(timestamp, frame number, [H, W, 3] uint8)``
    for each timestamp in turn (the video is opened once and closed after the last)."""
    from lfbtool.data.frames import close_source
    from lfbtool.data.sampling import keyframe_frame_number

    source = settings.open(video)
    try:
        fps = settings.fps_of(source)
        total = source.count_frames()
        if total < 1:
            raise LfbError(f"{source.path}: no frames (video {video})")
    except BaseException:
        close_source(source)
        raise

    def frames() -> Iterator[tuple[int, int, np.ndarray]]:
        try:
            for timestamp in timestamps:
                number = keyframe_frame_number(timestamp, fps=fps, timestamp_start=settings.timestamp_start,
                                               start_index=settings.start_index, total=total)
                try:
                    frame = source.read([number])[0]
                except LfbError as error:
                    raise LfbError(f"{error} (keyframe {key_text(video, timestamp)})",
                                   exit_code=error.exit_code) from None
                yield timestamp, number, frame.numpy()
        finally:
            close_source(source)

    return fps, frames()


def fps_text(fps: Fraction | int) -> str:
    return str(fps) if getattr(fps, "denominator", 1) != 1 else str(int(fps))
