"""Shared fixtures: one tiny AVA-style dataset and one random-weight checkpoint per test session, and the
extraction runs that several test modules read (each made once per session, or once per xdist worker)."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

# One thread in this process (set before torch is imported) and in every child (tests.extract_runs.child_env),
# whatever the shell says: CPU results depend on the thread count, and banks made here are compared
# bitwise with banks made there. Processes run side by side instead (make test: 2 pytest-xdist workers).
os.environ["OMP_NUM_THREADS"] = "1"
if "torch" in sys.modules:  # imported by a plugin before this file: the variable came too late
    sys.modules["torch"].set_num_threads(1)


@dataclass(frozen=True)
class TinyData:
    example: object  # lfbtool.testing.synthetic.AvaExample
    checkpoint: Path

    def extract_args(self, out: Path, *extra: str, videos: bool = False) -> list[str]:
        """Options for `lfbtool extract` on the tiny dataset (clip 4 x 2 at 4 fps, short side 32)."""
        ex = self.example
        source = ["--videos-root", str(ex.videos_root)] if videos else ["--frames-root", str(ex.frames_root)]
        return [
            "extract", "--out", str(out), "--mode", "train",
            "--annotations", str(ex.annotations_csv), "--excluded", str(ex.excluded_csv),
            "--proposals", str(ex.proposals_pkl), *source,
            "--checkpoint", str(self.checkpoint), "--fps", str(ex.fps),
            "--timestamp-start", str(ex.timestamp_start), "--clip-len", "4", "--frame-interval", "2",
            "--short-side", "32", "--num-workers", "0", *extra,
        ]


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory: pytest.TempPathFactory) -> TinyData:
    from lfbtool.testing.checkpoints import make_random_detector_checkpoint
    from lfbtool.testing.synthetic import make_ava_example

    root = tmp_path_factory.mktemp("tiny_ava")
    example = make_ava_example(root, seconds=7, fps=4, height=32, width=43)
    checkpoint = make_random_detector_checkpoint(root / "slowonly_r50_random.pth", seed=3)
    return TinyData(example=example, checkpoint=checkpoint)


# batch 1: the Nth forward is the Nth keyframe, and batch composition never varies with the world size
SEGMENT = ("--segment-size", "2", "--batch-size", "1")


@dataclass(frozen=True)
class Extracted:
    """One finished `lfbtool extract` run: its OUT directory and what it printed."""

    out: Path
    stdout: str

    @property
    def bank(self) -> Path:
        return self.out / "lfb_train.h5"


@pytest.fixture(scope="session")
def no_merge_run(tiny_data, tmp_path_factory) -> Extracted:
    """`extract --no-merge` in segments of 2: the shards that a `merge` or a `--resume` starts from.
    Shared: a test copies ``out`` before it changes anything there."""
    out = tmp_path_factory.mktemp("no_merge") / "out"
    done = run_lfbtool(tiny_data.extract_args(out, *SEGMENT, "--no-merge"))
    assert done.returncode == 0, done.stderr
    return Extracted(out=out, stdout=done.stdout)


@pytest.fixture(scope="session")
def half_bank(tiny_data, tmp_path_factory) -> Extracted:
    """The default (fp16) bank, batch 1, one thread: read by the golden and the end-to-end tests."""
    out = tmp_path_factory.mktemp("half")
    done = run_lfbtool(tiny_data.extract_args(out, "--batch-size", "1"))
    assert done.returncode == 0, done.stderr
    return Extracted(out=out, stdout=done.stdout)


@pytest.fixture(scope="session")
def reference(tiny_data, tmp_path_factory) -> Path:
    """The uninterrupted single-process bank (segments of 2), which distributed and resumed runs must equal."""
    from tests.extract_runs import bank_keys, expected_keys

    out = tmp_path_factory.mktemp("reference")
    done = run_lfbtool(tiny_data.extract_args(out, *SEGMENT))
    assert done.returncode == 0, done.stderr
    bank = out / "lfb_train.h5"
    assert bank_keys(bank) == expected_keys(tiny_data.example)
    return bank


def run_lfbtool(args: list[str], timeout: int = 300) -> subprocess.CompletedProcess:
    """Run the CLI as a user would (a new process), returning the CompletedProcess. One thread and no
    CUDA, whatever this shell has: banks are compared bitwise with runs and references made so."""
    from tests.extract_runs import child_env

    return subprocess.run([sys.executable, "-m", "lfbtool", *args], capture_output=True, text=True, timeout=timeout,
                          env=child_env())


def run_in_process(args: list[str], capsys: pytest.CaptureFixture) -> subprocess.CompletedProcess:
    """The console script's entry point (``lfbtool.cli.main``) in this process, reported as run_lfbtool
    reports a process: for refusals and short runs that need no process of their own (a new process
    pays ~3 s of CPU importing torch)."""
    from lfbtool.cli import main

    capsys.readouterr()  # only what this command prints
    argv, sys.argv = sys.argv, ["lfbtool", *args]
    try:
        main()
        code = 0
    except SystemExit as exited:
        code = exited.code if isinstance(exited.code, int) else int(exited.code is not None)
    finally:
        sys.argv = argv
    printed = capsys.readouterr()
    return subprocess.CompletedProcess(["lfbtool", *args], code, printed.out, printed.err)
