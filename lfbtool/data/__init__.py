"""Inputs: AVA keyframes and boxes, clip readers, frame sampling and preprocessing.

The names below load on first use (``from lfbtool.data import VideoFile``), so that importing one
torch-free submodule (``lfbtool.data.sampling``, ``lfbtool.data.ava``) does not import the frame
readers, which need torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from lfbtool import _lazy_names

if TYPE_CHECKING:
    from lfbtool.data.ava import (
        Keyframe,
        Skipped,
        build_keyframes,
        read_annotations,
        read_excluded,
        read_proposals,
        select_proposals,
    )
    from lfbtool.data.frames import ClipSource, FrameDirectory, VideoFile, open_source
    from lfbtool.data.preprocess import resize_clip, resized_shape, scale_boxes
    from lfbtool.data.sampling import crop_windows, keyframe_clip_numbers, test_clip_numbers

__all__ = ["ClipSource", "FrameDirectory", "Keyframe", "Skipped", "VideoFile", "build_keyframes",
           "crop_windows", "keyframe_clip_numbers", "open_source", "read_annotations", "read_excluded",
           "read_proposals", "resize_clip", "resized_shape", "scale_boxes", "select_proposals", "test_clip_numbers"]
__getattr__ = _lazy_names("lfbtool.data", {
    "ava": ("Keyframe", "Skipped", "build_keyframes", "read_annotations", "read_excluded", "read_proposals",
            "select_proposals"),
    "frames": ("ClipSource", "FrameDirectory", "VideoFile", "open_source"),
    "preprocess": ("resize_clip", "resized_shape", "scale_boxes"),
    "sampling": ("crop_windows", "keyframe_clip_numbers", "test_clip_numbers"),
})
