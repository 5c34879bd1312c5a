"""`lfbtool extract` end to end, checked against a reference computed here from plain torch ops.

The reference re-derives everything the bank should hold from the docs/design.md formulas: which
keyframes and boxes (MMAction2's AVADataset test mode), which frame files (SampleAVAFrames), the
SlowOnly-R50 forward (tests/reference.py, functional), temporal mean, torchvision roi_align (8x8,
1/16, aligned), spatial max, fp16. Only the resize reuses lfbtool's resize_clip (cv2-exact, unit
tested in test_preprocess.py); everything downstream of it is independent.
"""

from __future__ import annotations

import csv
import json
import pickle

import h5py
import numpy as np
import pytest
import torch
from torchvision.io import ImageReadMode, decode_image
from torchvision.ops import roi_align

from lfbtool.data.preprocess import resize_clip
from tests.conftest import run_lfbtool
from tests.reference import slowonly_r50_reference

MEAN = torch.tensor([123.675, 116.28, 103.53]).view(1, 3, 1, 1, 1)
STD = torch.tensor([58.395, 57.12, 57.375]).view(1, 3, 1, 1, 1)
CLIP_LEN, INTERVAL, SHORT_SIDE, THRESHOLD = 4, 2, 32, 0.9


def expected_keyframes(example) -> dict[tuple[str, int], tuple[np.ndarray, np.ndarray]]:
    """Annotated keys minus excluded; proposals >= min(0.9, best score); keys without proposals skipped."""
    with open(example.annotations_csv) as handle:
        annotated = {(row[0], int(row[1])) for row in csv.reader(handle)}
    with open(example.excluded_csv) as handle:
        excluded = {(row[0], int(row[1])) for row in csv.reader(handle)}
    with open(example.proposals_pkl, "rb") as handle:
        proposals = pickle.load(handle)  # the test's own fixture file
    result = {}
    for video_id, timestamp in sorted(annotated - excluded):
        text = f"{video_id},{timestamp:04d}"
        if text not in proposals:
            continue
        array = np.asarray(proposals[text], dtype=np.float32)
        keep = array[:, 4] >= min(THRESHOLD, array[:, 4].max())
        result[(video_id, timestamp)] = (array[keep, :4], array[keep, 4])
    return result


def reference_features(example, state: dict[str, torch.Tensor], video_id: str, timestamp: int,
                       boxes: np.ndarray) -> torch.Tensor:
    total = example.num_frames
    center = example.fps * (timestamp - example.timestamp_start) + 1
    start = center - (CLIP_LEN // 2) * INTERVAL
    numbers = [min(max(i, 0), total - 1) + 1 for i in range(start, center + ((CLIP_LEN + 1) // 2) * INTERVAL, INTERVAL)]
    frames = [
        decode_image(str(example.frames_root / video_id / f"img_{n:05d}.jpg"), mode=ImageReadMode.RGB)
        for n in numbers
    ]
    clip = torch.stack(frames).permute(0, 2, 3, 1)  # [T, H, W, 3]
    height, width = clip.shape[1], clip.shape[2]
    scale = SHORT_SIDE / min(height, width)
    new_h, new_w = int(height * scale + 0.5), int(width * scale + 0.5)
    resized = resize_clip(clip, (new_h, new_w))  # uint8 [3, T, h, w]
    x = (resized.float()[None] - MEAN) / STD
    with torch.no_grad():
        feature_map = slowonly_r50_reference(state, x).mean(dim=2)  # temporal avg -> [1, C, h', w']
    pixels = (boxes * np.array([width, height, width, height])).astype(np.float32)
    pixels = pixels * np.array([new_w / width, new_h / height] * 2, dtype=np.float32)
    rois = torch.cat([torch.zeros(len(boxes), 1), torch.from_numpy(pixels)], dim=1)
    pooled = roi_align(feature_map, rois, output_size=8, spatial_scale=1 / 16, sampling_ratio=0, aligned=True)
    return pooled.amax(dim=(2, 3))  # spatial max -> [n, C]


def read_bank(path) -> dict[tuple[str, int], dict[str, np.ndarray]]:
    with h5py.File(path, "r") as f:
        videos = [v.decode() for v in f["videos"][:]]
        video_offsets, timestamps, row_offsets = f["video_key_offsets"][:], f["timestamps"][:], f["key_row_offsets"][:]
        features, boxes, scores = f["features"][:], f["boxes"][:], f["scores"][:]
        bank = {}
        for v, video in enumerate(videos):
            for k in range(video_offsets[v], video_offsets[v + 1]):
                rows = slice(row_offsets[k], row_offsets[k + 1])
                bank[(video, int(timestamps[k]))] = {
                    "features": features[rows], "boxes": boxes[rows], "scores": scores[rows],
                }
        return bank


@pytest.fixture(scope="module")
def checkpoint_state(tiny_data) -> dict[str, torch.Tensor]:
    raw = torch.load(tiny_data.checkpoint, weights_only=True)["state_dict"]
    return {k.removeprefix("backbone."): v for k, v in raw.items() if k.startswith("backbone.")}


@pytest.fixture(scope="module")
def fp32_bank(tiny_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("fp32")
    done = run_lfbtool(tiny_data.extract_args(out, "--no-half", "--batch-size", "1"))
    assert done.returncode == 0, done.stderr
    return read_bank(out / "lfb_train.h5")


def test_fp32_features_equal_reference_exactly(tiny_data, checkpoint_state, fp32_bank):
    torch.set_num_threads(1)
    expected = expected_keyframes(tiny_data.example)
    assert list(fp32_bank) == sorted(expected), "keys differ from the MMAction2 selection"
    for (video_id, timestamp), (boxes, scores) in expected.items():
        stored = fp32_bank[(video_id, timestamp)]
        np.testing.assert_array_equal(stored["boxes"], boxes)
        np.testing.assert_array_equal(stored["scores"], scores)
        reference = reference_features(tiny_data.example, checkpoint_state, video_id, timestamp, boxes)
        assert stored["features"].dtype == np.float32
        assert torch.equal(torch.from_numpy(stored["features"]), reference), f"{video_id},{timestamp}"


def test_half_features_are_fp16_rounding_of_reference(tiny_data, checkpoint_state, half_bank):
    torch.set_num_threads(1)  # the bank was made with one thread: the same kernels in this process
    bank = read_bank(half_bank.bank)
    for (video_id, timestamp), stored in bank.items():
        assert stored["features"].dtype == np.float16
        reference = reference_features(tiny_data.example, checkpoint_state, video_id, timestamp, stored["boxes"])
        assert torch.equal(torch.from_numpy(stored["features"]), reference.half()), f"{video_id},{timestamp}"
    assert "keyframes" in half_bank.stdout and "skipped" in half_bank.stdout and str(half_bank.bank) in half_bank.stdout


def test_batched_forward_with_workers_matches_unbatched(tiny_data, fp32_bank, tmp_path):
    # 2 DataLoader workers decode (the last --num-workers given wins), batches of up to 3 keyframes
    done = run_lfbtool(tiny_data.extract_args(tmp_path, "--no-half", "--batch-size", "3", "--num-workers", "2"))
    assert done.returncode == 0, done.stderr
    with h5py.File(tmp_path / "lfb_train.h5") as f:
        assert json.loads(f.attrs["config"])["num_workers"] == 2
    batched = read_bank(tmp_path / "lfb_train.h5")
    assert list(batched) == list(fp32_bank)
    for key, stored in batched.items():
        np.testing.assert_allclose(stored["features"], fp32_bank[key]["features"], rtol=1e-5, atol=1e-4)


def test_mp4_gives_same_boxes_and_features_as_frame_dirs(tiny_data, fp32_bank, tmp_path):
    done = run_lfbtool(tiny_data.extract_args(tmp_path, "--no-half", "--batch-size", "1", videos=True))
    assert done.returncode == 0, done.stderr
    from_video = read_bank(tmp_path / "lfb_train.h5")
    assert list(from_video) == list(fp32_bank)
    for key, stored in from_video.items():
        np.testing.assert_array_equal(stored["boxes"], fp32_bank[key]["boxes"])
        # The example's mp4s are lossless (libx264rgb), so "codec tolerance" is tight here.
        np.testing.assert_allclose(stored["features"], fp32_bank[key]["features"], rtol=1e-5, atol=1e-4)


def test_whole_frame_fallback_adds_keys_without_proposals(tiny_data, tmp_path):
    example = tiny_data.example
    done = run_lfbtool(tiny_data.extract_args(tmp_path, "--whole-frame-fallback"))
    assert done.returncode == 0, done.stderr
    bank = read_bank(tmp_path / "lfb_train.h5")
    stored = bank[tuple(example.no_proposals_key)]
    np.testing.assert_array_equal(stored["boxes"], np.array([[0, 0, 1, 1]], dtype=np.float32))
    np.testing.assert_array_equal(stored["scores"], np.array([1.0], dtype=np.float32))
    assert set(bank) == set(expected_keyframes(example)) | {tuple(example.no_proposals_key)}
