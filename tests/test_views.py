"""Test-view frame numbers and crops against values worked out by hand from MMAction2's rules."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lfbtool.data.views import (
    crop_major,
    cut_crops,
    plan_clips,
    resolve_crop_size,
    windows_for,
)
from lfbtool.errors import LfbError


def test_design_example_ten_clips():
    # 132 frames, clip 4 x 16: span 49, max_offset 83, offsets round(k * 83 / 9).
    plan = plan_clips(132, clip_len=4, interval=16, num_clips=10, start_index=1)
    offsets = [0, 9, 18, 28, 37, 46, 55, 65, 74, 83]
    expected = np.array([[o + 1 + 16 * i for i in range(4)] for o in offsets])
    np.testing.assert_array_equal(plan.numbers, expected)
    assert plan.numbers[1].tolist() == [10, 26, 42, 58]
    assert not plan.looped and plan.span == 49


def test_offsets_round_half_to_even():
    # total 7, clip 2 x 1: max_offset 5, three clips -> 0, 2.5, 5; numpy rounds 2.5 to 2 (not 3).
    plan = plan_clips(7, clip_len=2, interval=1, num_clips=3, start_index=1)
    assert plan.numbers.tolist() == [[1, 2], [3, 4], [6, 7]]


def test_single_clip_is_centred_and_start_index_added():
    # total 20, clip 4 x 2: span 7, max_offset 13, offset 13 // 2 = 6.
    assert plan_clips(20, clip_len=4, interval=2, num_clips=1, start_index=1).numbers.tolist() == [
        [7, 9, 11, 13]
    ]
    assert plan_clips(20, clip_len=4, interval=2, num_clips=1, start_index=0).numbers.tolist() == [
        [6, 8, 10, 12]
    ]


def test_short_video_loops_and_says_so():
    # total 5, clip 4 x 2: span 7 > 5, offset 0, indices 0 2 4 6 -> mod 5 -> 0 2 4 1.
    plan = plan_clips(5, clip_len=4, interval=2, num_clips=2, start_index=1)
    assert plan.numbers.tolist() == [[1, 3, 5, 2], [1, 3, 5, 2]]
    assert plan.looped
    message = plan.notice("clip.mp4")
    assert message is not None and "clip.mp4" in message and "5 frames" in message and "7 frames" in message
    # Exactly one span of frames does not loop.
    assert not plan_clips(7, clip_len=4, interval=2, num_clips=2).looped
    assert plan_clips(7, clip_len=4, interval=2, num_clips=2).notice("x") is None


def test_2d_segments_take_the_middle_frame():
    # total 10, 3 segments of 10/3: 1.67, 5.0, 8.33 -> 1, 5, 8 -> files 2, 6, 9.
    assert plan_clips(10, clip_len=1, interval=1, num_clips=3).numbers.tolist() == [[2], [6], [9]]
    # Fewer frames than segments repeats frames: avg 0.4 -> 0.2 0.6 1.0 1.4 1.8 -> 0 0 1 1 1.
    plan = plan_clips(2, clip_len=1, interval=1, num_clips=5)
    assert plan.numbers.ravel().tolist() == [1, 1, 2, 2, 2]
    assert not plan.looped


def test_plan_rejects_empty_and_bad_arguments():
    with pytest.raises(LfbError, match="no frames"):
        plan_clips(0, clip_len=4, interval=1, num_clips=1)
    with pytest.raises(LfbError, match="--num-clips"):
        plan_clips(10, clip_len=4, interval=1, num_clips=0)


def test_center_crop_window():
    assert windows_for(48, 64, 32, "center") == [(16, 8, 48, 40, False)]
    # Odd margins floor: (67 - 32) // 2 = 17, (50 - 32) // 2 = 9.
    assert windows_for(50, 67, 32, "center") == [(17, 9, 49, 41, False)]


def test_three_crop_windows_landscape_and_portrait():
    # 48 x 64, crop 48: w_step (64 - 48) // 2 = 8 -> left, right, middle.
    assert windows_for(48, 64, 48, "three") == [
        (0, 0, 48, 48, False),
        (16, 0, 64, 48, False),
        (8, 0, 56, 48, False),
    ]
    assert windows_for(64, 48, 48, "three") == [
        (0, 0, 48, 48, False),
        (0, 16, 48, 64, False),
        (0, 8, 48, 56, False),
    ]
    # Odd leftover: (65 - 48) // 2 = 8, so "right" ends at 64, not at the border 65 (MMAction2 does this).
    assert windows_for(48, 65, 48, "three")[1] == (16, 0, 64, 48, False)


def test_ten_crop_windows_order_and_quirk():
    # 50 x 67, crop 32: w_step 35 // 4 = 8, h_step 18 // 4 = 4; corners at 4 * step, not at the border.
    corners = [(0, 0), (32, 0), (0, 16), (32, 16), (16, 8)]
    expected = [(x, y, x + 32, y + 32, flip) for x, y in corners for flip in (False, True)]
    assert windows_for(50, 67, 32, "ten") == expected


def test_crop_size_rules():
    assert resolve_crop_size("three", None, 48, 32) == 48
    assert resolve_crop_size("center", None, 48, 32) == 32
    assert resolve_crop_size("ten", 40, 48, 32) == 40
    with pytest.raises(LfbError, match="--crop-size must equal --short-side"):
        resolve_crop_size("three", 32, 48, 32)
    with pytest.raises(LfbError, match="larger than the resized short side"):
        resolve_crop_size("center", 64, 48, 32)
    with pytest.raises(LfbError, match="--crops must be one of center, three, ten"):
        resolve_crop_size("five", None, 48, 32)


def test_cut_crops_and_flip_content():
    h, w = 6, 9
    ys, xs = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    frame = (xs + 100 * ys).to(torch.int32)
    clip = frame.expand(3, 2, h, w)  # [3, T, H, W]
    crops = cut_crops(clip, [(1, 2, 4, 5, False), (1, 2, 4, 5, True)])
    assert crops.shape == (2, 3, 2, 3, 3)
    assert crops[0, 0, 0].tolist() == [[201, 202, 203], [301, 302, 303], [401, 402, 403]]
    assert crops[1, 0, 0].tolist() == [[203, 202, 201], [303, 302, 301], [403, 402, 401]]


def test_views_are_crop_major():
    num_clips, num_crops = 3, 2
    # Clip c, crop k carries the value 10 * k + c.
    per_clip = [
        torch.tensor([10 * k + c for k in range(num_crops)]).view(num_crops, 1, 1, 1, 1)
        for c in range(num_clips)
    ]
    views = crop_major(per_clip)
    assert views.flatten().tolist() == [0, 1, 2, 10, 11, 12]
    assert views.flatten()[1 * num_clips + 2] == 12  # view k * num_clips + c is crop k of clip c
