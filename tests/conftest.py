"""Shared fixtures: one tiny AVA-style dataset and one random-weight checkpoint per test session."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

# Child processes (lfbtool subprocesses, torchrun ranks) share 2 cores with the test process.
os.environ.setdefault("OMP_NUM_THREADS", "1")


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


def run_lfbtool(args: list[str], timeout: int = 300):
    """Run the CLI as a user would (a new process), returning the CompletedProcess. One thread and no
    CUDA, whatever this shell has: banks are compared bitwise with runs and references made so."""
    import subprocess

    from tests.extract_runs import child_env

    return subprocess.run([sys.executable, "-m", "lfbtool", *args], capture_output=True, text=True, timeout=timeout,
                          env=child_env())
