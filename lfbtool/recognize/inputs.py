"""The recognizer's inputs: opening a video file or frame directory, and
decoding one input's test views (MMAction2 ``SampleFrames`` test mode, short-side resize, crops).

Split from :mod:`lfbtool.recognize.scoring`, which scores what these functions decode; the lists of
inputs (``@list.txt``, MMAction2 annotation files) are :mod:`lfbtool.recognize.lists`.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from lfbtool.data.frames import ClipSource, FrameDirectory, VideoFile
from lfbtool.data.preprocess import resize_clip, resized_shape
from lfbtool.data.views import ClipPlan, cut_crops, plan_clips, windows_for
from lfbtool.errors import LfbError
from lfbtool.recognize.lists import expand_inputs

if TYPE_CHECKING:
    from lfbtool.recognize.scoring import TestSettings

__all__ = ["decode_clips", "expand_inputs", "open_input", "plan_for", "video_views"]


def open_input(path: Path, settings: TestSettings, listed_frames: int | None = None) -> ClipSource:
    """A frame directory when ``path`` is a directory, else a video file. ``listed_frames`` (a rawframes
    annotation list's count) makes ``path`` a frame directory by definition."""
    if path.is_dir():
        return FrameDirectory(path, template=settings.template, start_index=settings.start_index)
    if listed_frames is not None:
        raise LfbError(f"{path}: no such frame directory")
    if not path.exists():
        raise LfbError(f"{path}: no such video file or frame directory")
    return VideoFile(path, start_index=settings.start_index)


def plan_for(source: ClipSource, settings: TestSettings, listed_frames: int | None = None) -> ClipPlan:
    """The input's test clips; a too-short input is an error when looping is off.

    ``listed_frames``: the frame count a rawframes annotation list gives, which MMAction2's
    ``SampleFrames`` samples from instead of counting; a directory holding fewer frames is refused.
    """
    total = source.count_frames()
    if listed_frames is not None:
        if total < listed_frames:
            raise LfbError(f"{source.path}: the annotation list gives {listed_frames} frames but the directory "
                           f"holds {total} matching {settings.template}")
        total = listed_frames
    if total < 1:
        raise LfbError(f"{source.path}: no frames (frame directories must match {settings.template})")
    plan = plan_clips(
        total,
        clip_len=settings.clip_len,
        interval=settings.frame_interval,
        num_clips=settings.num_clips,
        start_index=settings.start_index,
    )
    if plan.looped and not settings.loop:
        raise LfbError(
            f"{source.path}: {plan.total} frames is shorter than one clip ({plan.span} frames) and --no-loop is set"
        )
    return plan


def decode_clips(source: ClipSource, plan: ClipPlan, settings: TestSettings, clips: range) -> Tensor:
    """uint8 crops of the clips in ``clips``: ``[num_crops, len(clips), 3, T, crop, crop]``."""
    per_clip = []
    for c in clips:
        frames = source.read(plan.numbers[c].tolist())
        height, width = int(frames.shape[1]), int(frames.shape[2])
        clip = resize_clip(frames, resized_shape(height, width, settings.short_side))
        per_clip.append(
            cut_crops(clip, windows_for(clip.shape[-2], clip.shape[-1], settings.crop_size, settings.crops))
        )
    return torch.stack(per_clip, dim=1)


def video_views(source: ClipSource, settings: TestSettings) -> tuple[Tensor, ClipPlan]:
    """uint8 views ``[num_crops * num_clips, 3, T, crop, crop]`` (crop-major) of one input."""
    plan = plan_for(source, settings)
    return decode_clips(source, plan, settings, range(plan.num_clips)).flatten(0, 1), plan
