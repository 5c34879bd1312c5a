"""The synthetic AVA example: deterministic, frame dir == mp4, and each special case it promises."""

import numpy as np
import pytest
import torch

from lfbtool.data import (
    FrameDirectory,
    VideoFile,
    build_keyframes,
    keyframe_clip_numbers,
    read_annotations,
    read_excluded,
    read_proposals,
)
from lfbtool.testing.synthetic import make_ava_example, synthetic_frames


@pytest.fixture(scope="module")
def example(tmp_path_factory):
    return make_ava_example(tmp_path_factory.mktemp("ava"))


def test_synthetic_frames_deterministic():
    a = synthetic_frames(6, 16, 20, seed=1)
    assert a.shape == (6, 16, 20, 3) and a.dtype == np.uint8
    np.testing.assert_array_equal(a, synthetic_frames(6, 16, 20, seed=1))
    assert not np.array_equal(a, synthetic_frames(6, 16, 20, seed=2))
    assert not np.array_equal(a[0], a[5])  # things move


def test_layout_and_determinism(example, tmp_path):
    assert example.num_frames == example.seconds * example.fps == 64
    assert example.timestamps == (902, 903, 904, 905)
    assert example.sizes["vid_a"] == (64, 85) and example.sizes["vid_c"] == (64, 48)
    again = make_ava_example(tmp_path, videos=False)
    assert again.videos_root is None
    for name in ("annotations_csv", "excluded_csv", "proposals_csv"):
        assert getattr(again, name).read_text() == getattr(example, name).read_text()


def test_videos_decode_to_the_frame_directories(example):
    everything = list(range(1, example.num_frames + 1))
    for vid in example.video_ids:
        frames = FrameDirectory(example.frames_root / vid)
        video = VideoFile(example.videos_root / f"{vid}.mp4")
        assert frames.count_frames() == video.count_frames() == example.num_frames
        clip = frames.read(everything)
        assert clip.shape[1:3] == example.sizes[vid]
        assert torch.equal(video.read(everything), clip)


def test_special_keys(example):
    annotations = read_annotations(example.annotations_csv)
    excluded = read_excluded(example.excluded_csv)
    proposals = read_proposals(example.proposals_pkl)
    rows = example.annotations_csv.read_text().splitlines()
    assert len(rows) > sum(len(b) for b in annotations.values())  # boxes repeat once per action
    assert all(1 <= len(b) <= 3 for b in annotations.values())
    assert excluded == {example.excluded_key}
    assert example.no_proposals_key in annotations and example.no_proposals_key not in proposals
    assert proposals[example.low_score_key][:, 4].max() < 0.9
    assert any((p[:, 4] < 0.9).any() and (p[:, 4] >= 0.9).any() for p in proposals.values())

    keyframes, skipped = build_keyframes(
        source="annotated", annotations=annotations, excluded=excluded, proposals=proposals
    )
    keys = [(k.video_id, k.timestamp) for k in keyframes]
    assert len(keys) == 3 * 4 - 2 and example.excluded_key not in keys
    assert [(s.video_id, s.timestamp, s.reason) for s in skipped] == [(*example.no_proposals_key, "no proposals")]
    low = keyframes[keys.index(example.low_score_key)]
    assert len(low.scores) >= 1 and (low.scores == proposals[example.low_score_key][:, 4].max()).all()
    for k in keyframes:
        assert ((k.boxes >= 0) & (k.boxes <= 1)).all() and (k.boxes[:, 2:] >= k.boxes[:, :2]).all()

    from_csv, _ = build_keyframes(
        source="annotated", annotations=annotations, excluded=excluded, proposals=read_proposals(example.proposals_csv)
    )
    assert [k.key for k in from_csv] == [k.key for k in keyframes]
    for a, b in zip(from_csv, keyframes, strict=True):
        np.testing.assert_array_equal(a.boxes, b.boxes)
        np.testing.assert_array_equal(a.scores, b.scores)

    every, _ = build_keyframes(source="proposals", annotations=None, excluded=excluded, proposals=proposals)
    assert example.proposals_only_key in [(k.video_id, k.timestamp) for k in every]


def test_demo_clips_fit(example):
    for ts in example.timestamps:
        numbers = keyframe_clip_numbers(
            ts, fps=example.fps, timestamp_start=example.timestamp_start, start_index=1,
            clip_len=4, interval=2, total=example.num_frames,
        )
        assert numbers.min() >= 1 and numbers.max() <= example.num_frames
