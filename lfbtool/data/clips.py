"""KeyframeClips: the per-keyframe work done in DataLoader workers (sample, decode, resize, scale boxes).

A worker never raises a project error across the process boundary (PyTorch would wrap it in a
multi-line message); it returns ``{"error": ..., "exit_code": ...}`` and the main loop raises it.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset

from lfbtool.data.ava import Keyframe, Skipped
from lfbtool.data.frames import ClipSource, close_source, open_source
from lfbtool.data.preprocess import resize_clip, resized_shape, scale_boxes
from lfbtool.data.sampling import keyframe_clip_indices, keyframe_clip_numbers
from lfbtool.errors import LfbError, SettingError


@dataclass(frozen=True)
class ClipSettings:
    frames_root: Path | None
    videos_root: Path | None
    frame_template: str
    video_ext: str
    fps: int | Fraction | str  # "auto": each video file's own rate (see fps_of)
    timestamp_start: int
    start_index: int
    clip_len: int
    frame_interval: int
    short_side: int

    def open(self, video_id: str) -> ClipSource:
        return open_source(
            video_id, frames_root=self.frames_root, videos_root=self.videos_root,
            template=self.frame_template, video_ext=self.video_ext, start_index=self.start_index,
        )

    def fps_of(self, source: ClipSource) -> int | Fraction:
        """The frame rate placing seconds in ``source``: the configured one, or with ``"auto"`` the
        video stream's (a frame directory has none: LfbError)."""
        if self.fps != "auto":
            return self.fps
        read_rate = getattr(source, "read_frame_rate", None)
        if read_rate is None:
            raise SettingError("fps", f"auto needs a video file, {source.path} is a frame directory: give {{0}} N "
                                      "for frame directories")
        return read_rate()


def keyframes_inside(keyframes: list[Keyframe], settings: ClipSettings) -> tuple[list[Keyframe], list[Skipped]]:
    """Open every video once before anything is written: a video without frames is an error naming it;
    a keyframe whose centre frame lies outside its video is skipped with a reason (a clip that only
    partly overflows keeps MMAction2's clamping to the first / last frame)."""
    kept: list[Keyframe] = []
    skipped: list[Skipped] = []
    totals: dict[str, tuple[int, int | Fraction]] = {}
    for keyframe in keyframes:
        if keyframe.video_id not in totals:
            source = settings.open(keyframe.video_id)
            if source.count_frames() < 1:
                raise LfbError(f"{source.path}: no frames (video {keyframe.video_id}); frame directories must "
                               f"hold files named like {settings.frame_template}")
            totals[keyframe.video_id] = (source.count_frames(), settings.fps_of(source))
            close_source(source)
        total, fps = totals[keyframe.video_id]
        centre = int(keyframe_clip_indices(keyframe.timestamp, fps=fps, timestamp_start=settings.timestamp_start,
                                           start_index=settings.start_index, clip_len=1, interval=1)[0])
        if 0 <= centre <= total - 1:
            kept.append(keyframe)
        else:
            skipped.append(Skipped(keyframe.video_id, keyframe.timestamp,
                                   f"centre frame outside the video ({total} frames)"))
    return kept, skipped


class KeyframeClips(Dataset):
    """Item i: the resized uint8 clip [3, T, h, w] of keyframe i and its boxes in resized pixels."""

    def __init__(self, keyframes: list[Keyframe], settings: ClipSettings, *, max_open: int = 4) -> None:
        self.keyframes = keyframes
        self.settings = settings
        self.max_open = max_open
        self._sources: OrderedDict[str, ClipSource] = OrderedDict()

    def __len__(self) -> int:
        return len(self.keyframes)

    def _source(self, video_id: str) -> ClipSource:
        if self._sources and next(reversed(self._sources)) != video_id:
            # Another video now: the frames the last one kept for its next clip would only wait.
            release = getattr(self._sources[next(reversed(self._sources))], "release_frames", None)
            if release is not None:
                release()
        source = self._sources.pop(video_id, None)
        if source is None:
            source = self.settings.open(video_id)
        self._sources[video_id] = source
        while len(self._sources) > self.max_open:
            _, old = self._sources.popitem(last=False)
            close_source(old)
        return source

    def load(self, index: int) -> dict[str, Any]:
        keyframe = self.keyframes[index]
        s = self.settings
        source = self._source(keyframe.video_id)
        numbers = keyframe_clip_numbers(
            keyframe.timestamp, fps=s.fps_of(source), timestamp_start=s.timestamp_start, start_index=s.start_index,
            clip_len=s.clip_len, interval=s.frame_interval, total=source.count_frames(),
        )
        frames = source.read([int(n) for n in numbers])
        height, width = int(frames.shape[1]), int(frames.shape[2])
        size = resized_shape(height, width, s.short_side)
        return {
            "index": index,
            "clip": resize_clip(frames, size),
            "boxes": torch.from_numpy(scale_boxes(keyframe.boxes, (height, width), size)),
        }

    def __getitem__(self, index: int) -> dict[str, Any]:
        try:
            return self.load(index)
        except LfbError as error:
            key = self.keyframes[index].key
            message = str(error) if key in str(error) else f"{error} (keyframe {key})"
            return {"index": index, "error": message, "exit_code": error.exit_code}
