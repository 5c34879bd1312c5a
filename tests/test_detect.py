"""``lfbtool detect`` against torchvision called directly, its outputs, crash + resume, torchrun, bad input.

A folder of two own videos (8 fps, 5 s, 48x64, lossless) and a random-weight
fasterrcnn_mobilenet_v3_large_320_fpn checkpoint whose person logit is raised so persons are found;
the detector runs at 64 px unless a test says otherwise. Clip 4 x 2: second t is whole for t = 1..4
(centre frame 8t + 1 + 1).

Random weights make the boxes depend little on the image (mostly anchors, one score): two frames can
give the same boxes. So which frame is detected on is checked on the frames handed to the detector,
exactly, and never inferred from boxes differing.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch

from lfbtool.data.ava import read_proposals
from tests.conftest import run_in_process, run_lfbtool
from tests.extract_runs import CRASH_RUNNER, child_env, free_port

DETECTOR = "fasterrcnn_mobilenet_v3_large_320_fpn"
FPS, SECONDS, HEIGHT, WIDTH = 8, 5, 48, 64
VIDEOS = ("clip_one", "clip_two")


@dataclass(frozen=True)
class OwnVideos:
    root: Path
    videos: Path
    checkpoint: Path

    def args(self, out: Path, *extra: str) -> list[str]:
        return ["detect", "--out", str(out), "--videos-root", str(self.videos), "--detector", DETECTOR,
                "--detector-checkpoint", str(self.checkpoint), "--clip-len", "4", "--frame-interval", "2",
                "--detector-min-size", "64", "--detector-max-size", "64", "--max-per-frame", "3", "--segment-size", "2",
                "--device", "cpu", *extra]


def person_checkpoint(path: Path, name: str = DETECTOR, seed: int = 0) -> Path:
    """A random-weight detector whose person logit is raised by 6, so random boxes score ~0.8 as persons."""
    from lfbtool.testing.checkpoints import make_random_person_detector

    return make_random_person_detector(path, name=name, seed=seed)


@pytest.fixture(scope="module")
def own(tmp_path_factory) -> OwnVideos:
    from lfbtool.testing.synthetic import synthetic_frames, write_video

    root = tmp_path_factory.mktemp("own_videos")
    for i, name in enumerate(VIDEOS):
        write_video(root / "videos" / f"{name}.mp4", synthetic_frames(FPS * SECONDS, HEIGHT, WIDTH, seed=10 + i), FPS)
    return OwnVideos(root=root, videos=root / "videos", checkpoint=person_checkpoint(root / "detector.pth"))


@pytest.fixture(scope="module")
def reference(own, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("reference") / "boxes.pkl"
    done = run_lfbtool(own.args(out))
    assert done.returncode == 0, done.stderr
    return out


def decoded_frames(path: Path) -> list[np.ndarray]:
    import av

    with av.open(str(path)) as container:
        return [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]


def torchvision_persons(model, frame: np.ndarray, threshold: float, limit: int) -> np.ndarray:
    """The plain torchvision call: [0, 1] float CHW image in, persons (label 1) >= threshold, boxes / (W, H)."""
    with torch.no_grad():
        out = model([torch.from_numpy(frame).permute(2, 0, 1).float() / 255.0])[0]
    keep = (out["labels"] == 1) & (out["scores"] >= threshold)
    boxes, scores = out["boxes"][keep][:limit], out["scores"][keep][:limit]
    height, width = frame.shape[:2]
    boxes = (boxes / torch.tensor([width, height, width, height], dtype=torch.float32)).clamp(0, 1)
    return torch.cat([boxes, scores[:, None]], 1).numpy()


def detect_in_process(own: OwnVideos, out: Path, **options):
    """``run_detect`` called as a library (no new process), on the test videos."""
    from lfbtool.detect.run import detect_config, run_detect

    settings = dict(videos_root=own.videos, detector=DETECTOR, detector_checkpoint=own.checkpoint, clip_len=4,
                    frame_interval=2, max_per_frame=3, device="cpu")
    return run_detect(detect_config(out=out, **{**settings, **options}), show_progress=False)


def test_detect_gives_torchvision_boxes_at_the_centre_frame(own, reference):
    import torchvision

    model = torchvision.models.get_model(DETECTOR, weights=None, weights_backbone=None, min_size=64, max_size=64)
    model.load_state_dict(torch.load(own.checkpoint, weights_only=True))
    model.eval()
    found = read_proposals(reference)
    expected_keys = [(v, t) for v in VIDEOS for t in range(1, 5)]  # whole clips of 4 x 2 in 40 frames
    assert sorted(found) == expected_keys
    for video in VIDEOS:
        frames = decoded_frames(own.videos / f"{video}.mp4")
        for t in range(1, 5):
            index = FPS * t + 1  # frame number fps*t + 1 + 1 (start_index twice) = decoded frame fps*t + 1
            expected = torchvision_persons(model, frames[index], 0.5, 3)
            assert len(expected) == 3
            assert np.array_equal(found[(video, t)], expected), (video, t)
    sidecar = json.loads(Path(f"{reference}.json").read_text())
    settings = sidecar["settings"]
    assert settings["detector"] == DETECTOR
    assert settings["detector_checkpoint_sha256"] == hashlib.sha256(own.checkpoint.read_bytes()).hexdigest()
    assert (settings["score_threshold"], settings["max_per_frame"]) == (0.5, 3)
    assert (settings["min_size"], settings["max_size"]) == (64, 64)  # as given
    assert (settings["fps"], settings["timestamp_start"]) == ("auto", 0)
    assert sidecar["keyframes"] == 8 and sidecar["boxes"] == 24
    assert not Path(f"{reference}.parts").exists()


def test_the_detector_sees_exactly_the_centre_frame(own, reference, tmp_path, monkeypatch):
    """The images handed to the detector are the decoded centre frames, bit for bit, and each differs
    from both neighbours (the videos change every frame): reading a neighbour would fail here."""
    import lfbtool.detect.run

    seen: list[np.ndarray] = []
    original = lfbtool.detect.run.detect_persons

    def spy(model, frames, *args, **kwargs):
        seen.extend(frame.numpy().copy() for frame in frames)
        return original(model, frames, *args, **kwargs)

    monkeypatch.setattr(lfbtool.detect.run, "detect_persons", spy)
    out = tmp_path / "boxes.pkl"
    detect_in_process(own, out, detector_min_size=64, detector_max_size=64)
    centre = []
    for video in VIDEOS:
        frames = decoded_frames(own.videos / f"{video}.mp4")
        for t in range(1, 5):
            index = FPS * t + 1
            assert not np.array_equal(frames[index], frames[index - 1])
            assert not np.array_equal(frames[index], frames[index + 1])
            centre.append(frames[index])
    assert len(seen) == len(centre) and all(np.array_equal(a, b) for a, b in zip(seen, centre, strict=True))
    assert out.read_bytes() == reference.read_bytes()  # in-process run, same boxes as the CLI's


@pytest.mark.parametrize(("name", "sizes"), [("fasterrcnn_mobilenet_v3_large_320_fpn", (320, 640)),
                                             ("fasterrcnn_mobilenet_v3_large_fpn", (800, 1333))])
def test_each_detector_runs_at_its_own_size(own, tmp_path, name, sizes):
    """Without size options, detect equals torchvision's model as get_model builds it (320/640 for the
    320 model, 800/1333 for the other), and the sidecar records the sizes used."""
    import torchvision

    checkpoint = person_checkpoint(tmp_path / "detector.pth", name=name)
    listing = tmp_path / "videos.txt"
    listing.write_text(f"{VIDEOS[0]}\n")
    out = tmp_path / "boxes.pkl"
    detect_in_process(own, out, detector=name, detector_checkpoint=checkpoint, video_list=listing, stride=2)
    found = read_proposals(out)
    assert sorted(found) == [(VIDEOS[0], 2), (VIDEOS[0], 4)]
    state = torch.load(checkpoint, weights_only=True)
    model = torchvision.models.get_model(name, weights=None, weights_backbone=None)
    model.load_state_dict(state)
    model.eval()
    assert (model.transform.min_size[-1], model.transform.max_size) == sizes  # torchvision's definition
    frames = decoded_frames(own.videos / f"{VIDEOS[0]}.mp4")
    centre = [frames[FPS * t + 1] for t in (2, 4)]
    for t, frame in zip((2, 4), centre, strict=True):
        expected = torchvision_persons(model, frame, 0.5, 3)
        assert len(expected) == 3 and np.array_equal(found[(VIDEOS[0], t)], expected), t
    settings = json.loads(Path(f"{out}.json").read_text())["settings"]
    assert (settings["detector"], settings["min_size"], settings["max_size"]) == (name, *sizes)
    if sizes != (800, 1333):  # the 320 model at 800/1333 (what lfbtool used to do) gives other boxes
        at_800 = torchvision.models.get_model(name, weights=None, weights_backbone=None, min_size=800, max_size=1333)
        at_800.load_state_dict(state)
        at_800.eval()
        assert not all(np.array_equal(torchvision_persons(at_800, frame, 0.5, 3), found[(VIDEOS[0], t)])
                       for t, frame in zip((2, 4), centre, strict=True))


def test_sizes_of_every_torchvision_detector():
    """Each registered detector's own sizes are read off the built model; given sizes replace them;
    SSD models (a fixed square input) refuse them in one line. Built on the meta device: no weights."""
    import torchvision

    from lfbtool.errors import LfbError
    from lfbtool.models.detector import build_detector, detector_names, has_fixed_size, input_sizes

    own_sizes = {"fasterrcnn_mobilenet_v3_large_320_fpn": (320, 640), "ssd300_vgg16": (300, 300),
                 "ssdlite320_mobilenet_v3_large": (320, 320)}  # torchvision's docs; 800/1333 for the rest
    names = detector_names()
    assert {"fcos_resnet50_fpn", "keypointrcnn_resnet50_fpn", "maskrcnn_resnet50_fpn", "retinanet_resnet50_fpn",
            "ssd300_vgg16", "ssdlite320_mobilenet_v3_large"} <= set(names)
    with torch.device("meta"):
        for name in names:
            plain = torchvision.models.get_model(name, weights=None, weights_backbone=None)
            assert has_fixed_size(name) == (plain.transform.fixed_size is not None), name
            assert input_sizes(build_detector(name)) == own_sizes.get(name, (800, 1333)), name
            if has_fixed_size(name):
                for given in ({"min_size": 64}, {"max_size": 96}):
                    with pytest.raises(LfbError, match=f"detector_{next(iter(given))} does not apply to {name}: SSD models") as refused:
                        build_detector(name, **given)
                    assert "\n" not in str(refused.value)
            else:
                assert input_sizes(build_detector(name, min_size=64, max_size=96)) == (64, 96), name
                assert input_sizes(build_detector(name, min_size=64)) == (64, own_sizes.get(name, (800, 1333))[1])


def test_csv_output_round_trips_to_the_same_keyframes(own, reference, tmp_path):
    out = tmp_path / "boxes.csv"
    done = run_lfbtool(own.args(out))
    assert done.returncode == 0, done.stderr
    first = out.read_text().splitlines()[0].split(",")
    assert len(first) == 8 and first[0] == "clip_one" and first[1] == "0001" and first[6] == ""
    from_csv, from_pkl = read_proposals(out), read_proposals(reference)
    assert sorted(from_csv) == sorted(from_pkl)
    for key, boxes in from_pkl.items():
        assert from_csv[key].dtype == np.float32 and np.array_equal(from_csv[key], boxes), key


def test_crash_then_resume_equals_an_uninterrupted_run(own, reference, tmp_path, capsys):
    out = tmp_path / "boxes.pkl"
    crashed = subprocess.run([sys.executable, str(CRASH_RUNNER), *own.args(out)], capture_output=True, text=True,
                             timeout=300, env=child_env(LFB_CRASH_AT="detect", LFB_CRASH_N="5"))
    assert crashed.returncode == -9, crashed.stderr
    parts = Path(f"{out}.parts")
    assert not out.exists() and not Path(f"{out}.json").exists()
    assert sorted(p.name for p in parts.glob("*.pkl")) == ["detect-a001-r00000-s000000.pkl", "detect-a001-r00000-s000001.pkl"]
    refused = run_in_process(own.args(out, "--resume", "--score-threshold", "0.6"), capsys)  # refusals: no process
    assert refused.returncode == 2 and "refusing to resume with other settings" in refused.stderr
    assert "score_threshold" in refused.stderr and len(refused.stderr.strip().splitlines()) == 1
    again = run_in_process(own.args(out), capsys)
    assert again.returncode == 2 and "--resume" in again.stderr
    resumed = run_lfbtool(own.args(out, "--resume"))
    assert resumed.returncode == 0, resumed.stderr
    assert "4 detected now, 4 resumed" in resumed.stdout
    assert out.read_bytes() == reference.read_bytes()
    assert json.loads(Path(f"{out}.json").read_text()) == json.loads(Path(f"{reference}.json").read_text())
    assert not parts.exists()
    complete = run_in_process(own.args(out, "--resume"), capsys)
    assert complete.returncode == 0 and "already complete" in complete.stdout


def test_two_processes_equal_one(own, reference, tmp_path):
    out = tmp_path / "boxes.pkl"
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
               f"--master_port={free_port()}", "-m", "lfbtool", *own.args(out)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, env=child_env())
    assert done.returncode == 0, done.stderr
    assert "processes   2" in done.stdout
    assert out.read_bytes() == reference.read_bytes()


def _refused(own: OwnVideos, tmp_path: Path, capsys, *args: str, videos: Path | None = None) -> str:
    out = tmp_path / "out" / "boxes.pkl"
    out.parent.mkdir()
    argv = own.args(out, *args)
    if videos is not None:
        argv[argv.index("--videos-root") + 1] = str(videos)
    done = run_in_process(argv, capsys)  # a refusal needs no process of its own
    assert done.returncode != 0
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert list(out.parent.iterdir()) == []  # nothing that looks finished, no parts
    return lines[0]


def test_unknown_detector(own, tmp_path, capsys):
    line = _refused(own, tmp_path, capsys, "--detector", "fasterrcnn_resnet9000")
    assert "unknown detector 'fasterrcnn_resnet9000'" in line and "fasterrcnn_resnet50_fpn_v2" in line


def test_checkpoint_of_another_detector(own, tmp_path, capsys):
    other = person_checkpoint(tmp_path / "ssdlite.pth", "ssdlite320_mobilenet_v3_large")
    line = _refused(own, tmp_path, capsys, "--detector-checkpoint", str(other))
    assert "ssdlite.pth: checkpoint does not fit detector fasterrcnn_mobilenet_v3_large_320_fpn" in line
    assert "missing keys [" in line and "unexpected keys [" in line


def test_video_without_frames(own, tmp_path, capsys):
    videos = tmp_path / "videos"
    videos.mkdir()
    (videos / "broken.mp4").write_bytes(b"")
    line = _refused(own, tmp_path, capsys, videos=videos)
    assert "broken.mp4" in line and "cannot open video" in line
    frames = tmp_path / "frames" / "blank"
    frames.mkdir(parents=True)
    listing = tmp_path / "list.txt"
    listing.write_text("blank\n")
    out = tmp_path / "out2" / "boxes.pkl"
    out.parent.mkdir()
    done = run_in_process(["detect", "--out", str(out), "--frames-root", str(tmp_path / "frames"), "--video-list",
                           str(listing), "--detector-checkpoint", str(own.checkpoint), "--detector", DETECTOR], capsys)
    assert done.returncode == 2 and done.stderr.strip().endswith("video blank has no frames"), done.stderr
    assert list(out.parent.iterdir()) == []


def test_weights_options(tmp_path, monkeypatch):
    from lfbtool.cli.options import error_text
    from lfbtool.errors import LfbError
    from lfbtool.models.detector import load_detector

    with pytest.raises(LfbError, match="detector_checkpoint FILE .* or detector_weights NAME") as caught:
        load_detector(DETECTOR)  # the library names settings; the CLI, their flags
    assert "--detector-checkpoint FILE (offline) or --detector-weights NAME" in error_text(caught.value)
    with pytest.raises(LfbError, match="not both"):
        load_detector(DETECTOR, checkpoint=tmp_path / "x.pth", weights="DEFAULT")
    with pytest.raises(LfbError, match="'IMAGENET' is not a torchvision weight of fasterrcnn_mobilenet_v3_large_320_fpn"):
        load_detector(DETECTOR, weights="IMAGENET")
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))  # nothing cached

    def offline(*args, **kwargs):
        raise OSError("network is unreachable")

    monkeypatch.setattr("torchvision.models._api.load_state_dict_from_url", offline)  # no network in tests
    with pytest.raises(LfbError, match="cannot download torchvision weights .*detector_checkpoint") as caught:
        load_detector(DETECTOR, weights="DEFAULT")
    assert "pass it with --detector-checkpoint" in error_text(caught.value)


def test_batches_equal_single_keyframes(own, reference, tmp_path):
    out = tmp_path / "boxes.pkl"
    done = run_lfbtool(own.args(out, "--batch-size", "3"))  # batches of 3, 3, 2 (same image size in both videos)
    assert done.returncode == 0, done.stderr
    assert out.read_bytes() == reference.read_bytes()
