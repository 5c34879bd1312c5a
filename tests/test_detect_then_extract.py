"""The two-step recipe of docs/own-videos.md: ``detect`` on videos at their own rates, then ``extract
--proposals``. The detect sidecar decides the frames; extract refuses settings that would read others.

Two videos, 25 and 30 fps (3 s, clip 4 x 2: seconds 1 and 2 are whole). The frame of second t is
number ``rate * t + 2`` (0-based index ``rate * t``, start_index entering twice): computed here from
the rates the videos were written at, and compared with the frame numbers the readers were asked for.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import run_in_process
from tests.test_detect import DETECTOR, person_checkpoint

RATES = {"at_25": 25, "at_30": 30}
SECONDS, HEIGHT, WIDTH = 3, 48, 64
CLIP = ("--clip-len", "4", "--frame-interval", "2")


@pytest.fixture(scope="module")
def two_rates(tmp_path_factory) -> Path:
    from lfbtool.testing.synthetic import synthetic_frames, write_video

    root = tmp_path_factory.mktemp("two_rates")
    for i, (name, rate) in enumerate(RATES.items()):
        write_video(root / "videos" / f"{name}.mp4", synthetic_frames(rate * SECONDS, HEIGHT, WIDTH, seed=30 + i), rate)
    person_checkpoint(root / "detector.pth")
    return root


@pytest.fixture
def reads(monkeypatch) -> list[tuple[str, list[int]]]:
    """Every ``VideoFile.read`` call in this process: (video id, frame numbers asked for)."""
    from lfbtool.data.frames import VideoFile

    seen: list[tuple[str, list[int]]] = []
    original = VideoFile.read

    def spy(self, numbers):
        seen.append((Path(self.path).stem, [int(n) for n in numbers]))
        return original(self, numbers)

    monkeypatch.setattr(VideoFile, "read", spy)
    return seen


def detect(root: Path, out: Path, capsys) -> None:
    done = run_in_process(["detect", "--out", str(out), "--videos-root", str(root / "videos"), "--detector", DETECTOR,
                           "--detector-checkpoint", str(root / "detector.pth"), *CLIP, "--detector-min-size", "64",
                           "--detector-max-size", "64", "--max-per-frame", "2", "--device", "cpu"], capsys)
    assert done.returncode == 0, done.stderr


def extract_args(root: Path, proposals: Path, out: Path, checkpoint: Path, *extra: str) -> list[str]:
    return ["extract", "--out", str(out), "--videos-root", str(root / "videos"), "--proposals", str(proposals),
            "--keyframes", "proposals", "--timestamp-start", "0", "--checkpoint", str(checkpoint), *CLIP,
            "--short-side", "32", "--num-workers", "0", "--device", "cpu", *extra]


def expected_numbers(video: str) -> list[int]:
    return [RATES[video] * t + 2 for t in (1, 2)]


def test_fps_30_after_detect_at_own_rates_is_refused_in_one_line(two_rates, tiny_data, tmp_path, capsys):
    proposals = tmp_path / "persons.pkl"
    detect(two_rates, proposals, capsys)
    assert json.loads(Path(f"{proposals}.json").read_text())["settings"]["fps"] == "auto"
    out = tmp_path / "bank"
    done = run_in_process(extract_args(two_rates, proposals, out, tiny_data.checkpoint, "--fps", "30"), capsys)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert f"{proposals}.json" in lines[0] and "--fps 30" in lines[0] and "auto" in lines[0]
    assert "(pass --fps auto)" in lines[0]
    assert not (out / "lfb_train.h5").exists() and not any(out.glob("**/*.h5"))


def test_fps_auto_reads_the_frames_the_boxes_were_found_on(two_rates, tiny_data, tmp_path, capsys, reads):
    from lfbtool.bank.reader import FeatureBank
    from lfbtool.data.ava import read_proposals

    proposals = tmp_path / "persons.csv"  # the FAIR CSV and its sidecar persons.csv.json
    detect(two_rates, proposals, capsys)
    detected = list(reads)
    for video in RATES:  # detect read the keyframe images at each video's own rate
        assert [numbers[0] for name, numbers in detected if name == video] == expected_numbers(video)
    reads.clear()
    out = tmp_path / "bank"
    done = run_in_process(extract_args(two_rates, proposals, out, tiny_data.checkpoint, "--fps", "auto"), capsys)
    assert done.returncode == 0, done.stderr
    for video in RATES:  # every clip is centred on that same frame
        centres = [numbers[2] for name, numbers in reads if name == video]
        assert centres == expected_numbers(video), video
    boxes = read_proposals(proposals)
    with FeatureBank(out / "lfb_train.h5") as bank:
        assert sorted(bank) == sorted(boxes)


@pytest.mark.parametrize(("extra", "setting"), [
    (("--fps", "auto", "--start-index", "0"), "--start-index 0"),
    (("--fps", "auto", "--clip-len", "2", "--frame-interval", "2"), "--clip-len 2 --frame-interval 2"),
])
def test_other_settings_that_move_the_frames_are_refused(two_rates, tiny_data, tmp_path, capsys, extra, setting):
    proposals = tmp_path / "persons.pkl"
    detect(two_rates, proposals, capsys)
    args = extract_args(two_rates, proposals, tmp_path / "bank", tiny_data.checkpoint)
    args = args[:args.index("--clip-len")] + args[args.index("--short-side"):]  # the clip given below
    clip = () if "--clip-len" in extra else CLIP
    done = run_in_process([*args, *clip, *extra], capsys)
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert f"{proposals}.json" in done.stderr and setting in done.stderr


def test_a_bad_sidecar_is_one_line_naming_it(tiny_data, tmp_path, capsys):
    proposals = tmp_path / "persons.pkl"
    proposals.write_bytes(b"")
    Path(f"{proposals}.json").write_text("{not json")
    done = run_in_process(["extract", "--out", str(tmp_path / "bank"), "--frames-root", str(tmp_path),
                           "--proposals", str(proposals), "--keyframes", "proposals",
                           "--checkpoint", str(tiny_data.checkpoint), "--device", "cpu"], capsys)
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert f"{proposals}.json: not a sidecar written by lfbtool detect" in done.stderr
