"""`lfbtool extract --backbone` with SlowFast R50, SlowOnly R101 and non-local SlowOnly R50 on the tiny
dataset: banks of the spec's width that `lfbtool verify` accepts, rows equal to the functional
references of tests/reference.py, and (SlowFast) the same bank from torchrun and from a killed and
resumed run as from one process."""

from __future__ import annotations

import signal
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from torchvision.io import ImageReadMode, decode_image
from torchvision.ops import roi_align

from lfbtool.data.preprocess import resize_clip
from lfbtool.testing.checkpoints import make_random_detector_checkpoint
from tests.conftest import SEGMENT, run_in_process, run_lfbtool
from tests.extract_runs import CRASH_RUNNER, assert_same_bank, run, torchrun_command
from tests.reference import NL_R50, slowfast_r50_reference, slowonly_reference
from tests.test_extract_e2e import expected_keyframes, read_bank

MEAN = torch.tensor([123.675, 116.28, 103.53]).view(1, 3, 1, 1, 1)
STD = torch.tensor([58.395, 57.12, 57.375]).view(1, 3, 1, 1, 1)
SHORT_SIDE = 32

# name: (clip_len, frame_interval, functional forward returning a map or a tuple of maps)
BACKBONES = {
    "slowfast_r50": (8, 1, lambda sd, x: slowfast_r50_reference(sd, x, rate=8, speed=8, fusion_kernel=5)),
    "slowonly_r101": (4, 1, lambda sd, x: slowonly_reference(sd, x, depth=101)),
    "slowonly_r50_nl": (4, 1, lambda sd, x: slowonly_reference(sd, x, non_local=NL_R50)),
}
WIDTH = {"slowfast_r50": 2304, "slowonly_r101": 2048, "slowonly_r50_nl": 2048}


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory) -> dict[str, object]:
    root = tmp_path_factory.mktemp("mm_ckpts")
    return {name: make_random_detector_checkpoint(root / f"{name}.pth", backbone=name, seed=5) for name in BACKBONES}


@pytest.fixture(scope="module")
def one_process_bank(tiny_data, checkpoints, tmp_path_factory):
    """``bank(name)``: the fp32 bank of one process, batch 1, segments of 2, made on first use (SlowFast's
    is both checked against the reference and the one its torchrun and resumed runs must equal)."""
    made: dict[str, Path] = {}

    def bank(name: str) -> Path:
        if name not in made:
            out = tmp_path_factory.mktemp(name)
            done = run_lfbtool(_args(tiny_data, out, name, checkpoints[name], "--no-half", *SEGMENT))
            assert done.returncode == 0, done.stderr
            made[name] = out / "lfb_train.h5"
        return made[name]

    return bank


def _args(tiny_data, out, name: str, checkpoint, *extra: str) -> list[str]:
    clip_len, interval, _ = BACKBONES[name]
    return tiny_data.extract_args(out, "--backbone", name, "--checkpoint", str(checkpoint), "--clip-len",
                                  str(clip_len), "--frame-interval", str(interval), *extra)


def _reference_rows(example, checkpoint, name: str, video_id: str, timestamp: int, boxes: np.ndarray) -> torch.Tensor:
    clip_len, interval, forward = BACKBONES[name]
    raw = torch.load(checkpoint, weights_only=True)["state_dict"]
    state = {k.removeprefix("backbone."): v for k, v in raw.items() if k.startswith("backbone.")}
    return reference_rows(example, lambda x: forward(state, x), clip_len, interval, video_id, timestamp, boxes)


def reference_rows(example, forward, clip_len: int, interval: int, video_id: str, timestamp: int, boxes: np.ndarray,
                   *, short_side: int = SHORT_SIDE, stride: int = 16, normalize=None) -> torch.Tensor:
    """SampleAVAFrames' frame files, cv2-exact resize, ``normalize`` (default: MMAction2's mean/std on
    0-255), ``forward`` (a functional trunk: normalized clip -> map or tuple of maps), then (per pathway)
    nearest resize to (max T, first H, W), temporal mean, concat, roi_align 8x8 aligned at 1 / ``stride``,
    spatial max."""
    center = example.fps * (timestamp - example.timestamp_start) + 1
    start = center - (clip_len // 2) * interval
    stop = center + ((clip_len + 1) // 2) * interval
    numbers = [min(max(i, 0), example.num_frames - 1) + 1 for i in range(start, stop, interval)]
    frames = [decode_image(str(example.frames_root / video_id / f"img_{n:05d}.jpg"), mode=ImageReadMode.RGB)
              for n in numbers]
    clip = torch.stack(frames).permute(0, 2, 3, 1)
    height, width = clip.shape[1], clip.shape[2]
    scale = short_side / min(height, width)
    new_h, new_w = int(height * scale + 0.5), int(width * scale + 0.5)
    resized = resize_clip(clip, (new_h, new_w)).float()[None]
    x = (resized - MEAN) / STD if normalize is None else normalize(resized)
    with torch.no_grad():
        maps = forward(x)
    maps = list(maps) if isinstance(maps, tuple) else [maps]
    size = (max(m.shape[2] for m in maps), *maps[0].shape[3:])
    pooled = torch.cat([torch.nn.functional.interpolate(m, size=size).mean(dim=2) for m in maps], dim=1)
    pixels = (boxes * np.array([width, height, width, height])).astype(np.float32)
    pixels = pixels * np.array([new_w / width, new_h / height] * 2, dtype=np.float32)
    rois = torch.cat([torch.zeros(len(boxes), 1), torch.from_numpy(pixels)], dim=1)
    return roi_align(pooled, rois, output_size=8, spatial_scale=1 / stride, sampling_ratio=0,
                     aligned=True).amax(dim=(2, 3))


@pytest.mark.parametrize("name", sorted(BACKBONES))
def test_bank_has_spec_width_verifies_and_equals_reference(tiny_data, checkpoints, one_process_bank,
                                                           name: str) -> None:
    torch.set_num_threads(1)
    bank_path = one_process_bank(name)
    verified = run_lfbtool(["verify", str(bank_path)])
    assert verified.returncode == 0, verified.stderr
    bank = read_bank(bank_path)
    expected = expected_keyframes(tiny_data.example)
    assert list(bank) == sorted(expected)
    portrait = tiny_data.example.video_ids[-1]  # a keyframe of the portrait video, and the first one
    for key in (sorted(expected)[0], next(k for k in sorted(expected) if k[0] == portrait)):
        stored = bank[key]
        assert stored["features"].shape == (len(expected[key][0]), WIDTH[name])
        reference = _reference_rows(tiny_data.example, checkpoints[name], name, *key, stored["boxes"])
        assert torch.equal(torch.from_numpy(stored["features"]), reference), key


def test_slowfast_torchrun_and_resume_give_the_one_process_bank(tiny_data, checkpoints, one_process_bank,
                                                                 tmp_path, capsys) -> None:
    name = "slowfast_r50"
    single = one_process_bank(name)

    two = tmp_path / "two"
    launched = run(torchrun_command(["--standalone", "--nproc_per_node=2"], _args(
        tiny_data, two, name, checkpoints[name], "--no-half", *SEGMENT, "--device", "cpu")))
    assert launched.returncode == 0, launched.stderr
    assert_same_bank(single, two / "lfb_train.h5")

    resumed_out = tmp_path / "resumed"
    args = _args(tiny_data, resumed_out, name, checkpoints[name], "--no-half", *SEGMENT)
    killed = run([sys.executable, str(CRASH_RUNNER), *args], LFB_CRASH_AT="forward", LFB_CRASH_N="4")
    assert killed.returncode == -signal.SIGKILL and not (resumed_out / "lfb_train.h5").exists()
    resumed = run_in_process(args + ["--resume"], capsys)  # one thread, as the killed process had
    assert resumed.returncode == 0, resumed.stderr
    assert_same_bank(single, resumed_out / "lfb_train.h5")
    with h5py.File(resumed_out / "lfb_train.h5") as handle:
        assert int(handle.attrs["feature_dim"]) == 2304
