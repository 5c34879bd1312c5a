"""A recognizer's test views: which frames each clip reads, which crops it takes, in MMAction2's order.

The numbers come from :mod:`lfbtool.data.sampling` (``SampleFrames`` test mode, ``CenterCrop`` /
``ThreeCrop`` / ``TenCrop`` windows). This module adds what the recognize loop needs on top: whether
a video is so short that its frames loop, the crop size each mode implies, cutting the crops out of
a resized clip, and the order of the views.

View order is MMAction2's: the crop transforms run after all clips are decoded and ``FormatShape``
reshapes to ``[N_crops, N_clips, ...]`` before flattening, so views are *crop-major*:
view ``k * num_clips + c`` is crop ``k`` of clip ``c``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from lfbtool.choices import CropMode
from lfbtool.data.sampling import crop_windows, test_clip_numbers
from lfbtool.errors import LfbError

NUM_CROPS: dict[CropMode, int] = {CropMode.center: 1, CropMode.three: 3, CropMode.ten: 10}

CropWindow = tuple[int, int, int, int, bool]


@dataclass(frozen=True)
class ClipPlan:
    """Frame numbers of every test clip of one video, and whether they wrapped around."""

    numbers: np.ndarray  # int64 [num_clips, clip_len]
    total: int
    span: int  # frames one clip covers: (clip_len - 1) * interval + 1
    looped: bool  # the video is shorter than one clip, so indices wrapped modulo total

    @property
    def num_clips(self) -> int:
        return int(self.numbers.shape[0])

    @property
    def clip_len(self) -> int:
        return int(self.numbers.shape[1])

    def notice(self, name: str) -> str | None:
        """The one-line message users see when frames loop; None when they do not."""
        if not self.looped:
            return None
        return (
            f"{name}: {self.total} frames is shorter than one clip ({self.span} frames); "
            "frame indices loop modulo the frame count as in MMAction2 SampleFrames"
        )


def plan_clips(total: int, *, clip_len: int, interval: int, num_clips: int, start_index: int = 1) -> ClipPlan:
    """Test-clip frame numbers (docs/design.md "Recognizer test clips") plus the looping flag.

    A 3D clip loops exactly when ``total < span``: otherwise the last clip ends at ``total - 1``.
    2D sampling (``clip_len == 1``) never wraps (it may repeat frames when total < num_clips).
    """
    if total < 1:
        raise LfbError("the input has no frames")
    for name, value in (("clip_len", clip_len), ("frame_interval", interval), ("num_clips", num_clips)):
        if value < 1:
            raise LfbError(f"--{name.replace('_', '-')} must be >= 1, got {value}")
    numbers = test_clip_numbers(
        total, clip_len=clip_len, interval=interval, num_clips=num_clips, start_index=start_index
    )
    span = (clip_len - 1) * interval + 1
    return ClipPlan(numbers=numbers, total=total, span=span, looped=clip_len > 1 and total < span)


def resolve_crop_size(mode: str, crop_size: int | None, short_side: int, default: int) -> int:
    """The square crop side a mode uses after resizing the short side to ``short_side``.

    ``three`` is MMAction2's ``ThreeCrop``, which needs the crop to span the short side, so it
    defaults to ``short_side`` and refuses any other size; ``center`` / ``ten`` default to
    ``default`` (the recognizer's test crop).
    """
    mode = CropMode.parse(mode, "--crops")
    if mode is CropMode.three:
        if crop_size is not None and crop_size != short_side:
            raise LfbError(
                f"--crops three spans the short side: --crop-size must equal --short-side ({short_side}) "
                f"or be left out, got {crop_size}"
            )
        return short_side
    size = default if crop_size is None else crop_size
    if size < 1:
        raise LfbError(f"--crop-size must be >= 1, got {size}")
    if size > short_side:
        raise LfbError(f"--crop-size {size} is larger than the resized short side {short_side}")
    return size


def windows_for(height: int, width: int, crop_size: int, mode: str) -> list[CropWindow]:
    """Crop windows ``(x1, y1, x2, y2, flipped)`` in MMAction2's order, with project errors."""
    try:
        return crop_windows(height, width, crop_size, CropMode.parse(mode, "--crops"))
    except ValueError as error:
        raise LfbError(f"cannot crop a {height}x{width} frame: {error}") from error


def cut_crops(clip: torch.Tensor, windows: list[CropWindow]) -> torch.Tensor:
    """Cut ``[3, T, H, W]`` into ``[num_crops, 3, T, h, w]``; flipped windows mirror the width axis."""
    crops = []
    for x1, y1, x2, y2, flipped in windows:
        crop = clip[..., y1:y2, x1:x2]
        crops.append(torch.flip(crop, dims=(-1,)) if flipped else crop)
    return torch.stack(crops, dim=0)


def crop_major(per_clip: list[torch.Tensor]) -> torch.Tensor:
    """Stack per-clip crops ``[K, 3, T, h, w]`` (one per clip) into views ``[K * num_clips, ...]``.

    Crop-major like MMAction2's ``FormatShape``: all clips of crop 0, then all clips of crop 1, ...
    """
    return torch.stack(per_clip, dim=1).flatten(0, 1)

