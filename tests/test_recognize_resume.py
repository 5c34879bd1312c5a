"""recognize over a test set: keep going past a bad input, resume after kill -9, torchrun = one process,
refusals of an existing --out and of other settings, and memory-bounded views."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
from typer.testing import CliRunner

from lfbtool.cli import app
from lfbtool.models.recognizer_factory import build_recognizer
from lfbtool.recognize.scoring import RecognizeOptions, recognize, resolve_settings
from lfbtool.testing.synthetic import synthetic_frames, write_frame_dir, write_video

try:
    from tests.conftest import run_in_process
    from tests.extract_runs import child_env, free_port
except ImportError:  # pytest run with tests/ on sys.path
    from conftest import run_in_process
    from extract_runs import child_env, free_port

ROOT = Path(__file__).resolve().parents[1]
OPTIONS = ["--num-clips", "2", "--clip-len", "4", "--frame-interval", "1", "--short-side", "32", "--crop-size", "32",
           "--device", "cpu"]


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    """Five inputs (the third is broken) and a random r3d_18 checkpoint with 5 classes."""
    root = tmp_path_factory.mktemp("resume")
    inputs = []
    for i in range(5):
        if i == 2:
            broken = root / "v2_broken.mp4"
            broken.write_bytes(b"\x00\x00\x00\x18ftypmp42 not a video at all")
            inputs.append(broken)
            continue
        frames = synthetic_frames(6 + i, 32, 40, seed=i)
        inputs.append(write_video(root / f"v{i}.mp4", frames, fps=8, lossless=True))
    torch.manual_seed(0)
    model = torchvision.models.video.r3d_18(num_classes=5)
    torch.save(model.state_dict(), root / "r3d.pth")
    listing = root / "inputs.txt"
    listing.write_text("".join(f"{p}\n" for p in inputs))
    return {"root": root, "inputs": inputs, "checkpoint": root / "r3d.pth", "listing": listing}


def cli_args(clips, *extra: str) -> list[str]:
    return ["recognize", f"@{clips['listing']}", "--backbone", "r3d_18", "--checkpoint", str(clips["checkpoint"]),
            *OPTIONS, *extra]


def run_cli(args: list[str], **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "lfbtool", *args], capture_output=True, text=True, timeout=300,
                          env=child_env(PYTHONPATH=str(ROOT), **env))


def records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture(scope="module")
def reference(clips, tmp_path_factory):
    """The uninterrupted single-process run."""
    out = tmp_path_factory.mktemp("reference") / "results.jsonl"
    features = out.with_name("features.h5")
    done = run_cli(cli_args(clips, "--out", str(out), "--features", str(features), "--average-clips", "none"))
    assert done.returncode == 1, done.stderr
    return out, features, done


def test_one_broken_input_is_reported_and_the_others_scored_as_alone(clips, reference):
    out, _, done = reference
    got = records(out)
    assert [r["index"] for r in got] == [0, 1, 2, 3, 4]
    assert [r["input"] for r in got] == [str(p) for p in clips["inputs"]]
    broken = got[2]
    assert set(broken) == {"index", "input", "error", "fingerprint", "settings"}
    assert "v2_broken.mp4" in broken["error"] and "cannot open video" in broken["error"]
    assert f"failed: {broken['error']}" in done.stderr and "4 of 5 inputs scored" in done.stderr
    assert not list(out.parent.glob("*.parts"))
    recognizer = build_recognizer("r3d_18", checkpoint=str(clips["checkpoint"])).recognizer
    settings = resolve_settings(recognizer, RecognizeOptions(num_clips=2, clip_len=4, frame_interval=1, short_side=32,
                                                             crop_size=32, average_clips="none"))
    for i in (0, 1, 3, 4):
        (alone,) = recognize([clips["inputs"][i]], recognizer, settings)
        assert got[i]["scores"] == alone.scores.tolist()  # exactly: same views, same forwards


def test_existing_out_is_refused_without_resume_or_overwrite(clips, reference, tmp_path):
    out = tmp_path / "results.jsonl"
    out.write_text(reference[0].read_text())
    result = CliRunner().invoke(app, cli_args(clips, "--out", str(out), "--average-clips", "none",
                                              "--features", str(tmp_path / "f.h5")))
    assert "results.jsonl: holds" in str(result.exception) and "--overwrite" in str(result.exception)
    result = CliRunner().invoke(app, cli_args(clips, "--out", str(out), "--resume", "--num-clips", "3"))
    message = str(result.exception)
    assert "refusing to resume with other settings" in message and "num_clips 3 now, 2 there" in message
    assert 'average_clips "score" now, "none" there' in message
    result = CliRunner().invoke(app, cli_args(clips, "--out", str(out), "--overwrite", "--num-clips", "1"))
    assert result.exit_code == 1 and {r["settings"]["num_clips"] for r in records(out)} == {1}


KILL_AT_THIRD_RECORD = """
import os, signal, sys
from lfbtool.recognize import _records
finish = _records._RecordsBuilder.finish
count = [0]
def dying_finish(self):
    count[0] += 1
    if count[0] == 3:  # the third input's part is being written when the process dies
        os.kill(os.getpid(), signal.SIGKILL)
    finish(self)
_records._RecordsBuilder.finish = dying_finish
sys.argv = ["lfbtool", *sys.argv[1:]]
from lfbtool.cli import main
main()
"""


def test_kill_then_resume_gives_the_uninterrupted_files(clips, reference, tmp_path, capsys):
    out, features = tmp_path / "results.jsonl", tmp_path / "features.h5"
    args = cli_args(clips, "--out", str(out), "--features", str(features), "--average-clips", "none")
    killed = subprocess.run([sys.executable, "-c", KILL_AT_THIRD_RECORD, *args], capture_output=True, text=True,
                            timeout=300, env=child_env(PYTHONPATH=str(ROOT)))
    assert killed.returncode == -9
    parts = tmp_path / "results.jsonl.parts"
    assert not out.exists() and sorted(p.name for p in parts.glob("*.npz")) == [
        "recognize-a001-r00000-s000000.npz", "recognize-a001-r00000-s000001.npz"]
    # the killed run was a process; what follows runs the console script in this process (one thread)
    assert run_in_process(args, capsys).returncode == 2  # an interrupted run's parts count as an existing --out
    resumed = run_in_process([*args, "--resume"], capsys)
    assert resumed.returncode == 1, resumed.stderr
    assert "2 already recorded" in resumed.stderr
    assert out.read_bytes() == reference[0].read_bytes()
    assert_same_embeddings(features, reference[1])
    again = run_in_process([*args, "--resume"], capsys)  # a finished run resumes to the same files
    assert again.returncode == 1 and out.read_bytes() == reference[0].read_bytes()
    assert_same_embeddings(features, reference[1])


def assert_same_embeddings(a: Path, b: Path) -> None:
    from lfbtool import read_embeddings

    x, y = read_embeddings(a), read_embeddings(b)
    assert x.inputs == y.inputs and x.failed == y.failed and x.settings == y.settings
    assert np.array_equal(x.embeddings, y.embeddings) and np.array_equal(x.num_views, y.num_views)


def test_two_gloo_ranks_write_what_one_process_writes(clips, reference, tmp_path):
    out, features = tmp_path / "results.jsonl", tmp_path / "features.h5"
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
               f"--rdzv-endpoint=127.0.0.1:{free_port()}", "-m", "lfbtool",
               *cli_args(clips, "--out", str(out), "--features", str(features), "--average-clips", "none", "--json")]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, env=child_env(PYTHONPATH=str(ROOT)))
    assert done.returncode != 0 and "4 of 5 inputs scored" in done.stderr, done.stderr
    assert out.read_bytes() == reference[0].read_bytes()
    assert_same_embeddings(features, reference[1])
    printed = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    assert printed == records(out)  # rank 0 prints every record once, in input order
    assert not (tmp_path / "results.jsonl.parts").exists() and not (tmp_path / "features.h5.parts").exists()


def test_memory_budget_groups_clips_with_the_same_results(tmp_path):
    frames = synthetic_frames(12, 32, 40, seed=9)
    write_frame_dir(tmp_path / "clip", frames, template="img_{:05d}.png")
    torch.manual_seed(1)
    recognizer = build_recognizer("r3d_18", num_classes=3).recognizer.eval()
    base = dict(num_clips=5, clip_len=2, frame_interval=2, short_side=32, crop_size=16, crops="ten",
                template="img_{:05d}.png", max_testing_views=1)
    view_bytes = 3 * 2 * 16 * 16
    for mode in ("score", "none"):
        whole = resolve_settings(recognizer, RecognizeOptions(**base, average_clips=mode))
        small = resolve_settings(recognizer, RecognizeOptions(**base, average_clips=mode,
                                                             memory_budget=2 * 10 * view_bytes))
        assert whole.clips_per_group == 5 and small.clips_per_group == 2  # 5 clips in groups of 2, 2, 1
        (a,) = recognize([tmp_path / "clip"], recognizer, whole, embeddings=True, keep_views=True)
        (b,) = recognize([tmp_path / "clip"], recognizer, small, embeddings=True, keep_views=True)
        assert a.num_views == b.num_views == 50
        assert torch.equal(a.scores, b.scores) and torch.equal(a.embeddings, b.embeddings)
        assert torch.equal(a.view_scores, b.view_scores) and a.view_scores.shape == (50, 3)
        assert np.array_equal(a.plan.numbers, b.plan.numbers)


def test_no_loop_makes_a_short_video_a_failed_input(clips):
    recognizer = build_recognizer("r3d_18", checkpoint=str(clips["checkpoint"])).recognizer
    short = clips["inputs"][0]  # 6 frames
    options = dict(num_clips=1, clip_len=4, frame_interval=2, short_side=32, crop_size=32)  # span 7
    (looped,) = recognize([short], recognizer, resolve_settings(recognizer, RecognizeOptions(**options)))
    assert looped.looped and looped.error is None
    strict = resolve_settings(recognizer, RecognizeOptions(**options, loop=False))
    (failed,) = recognize([short], recognizer, strict, keep_going=True)
    assert failed.scores is None and failed.error == (
        f"{short}: 6 frames is shorter than one clip (7 frames) and --no-loop is set")
