"""One command from a folder of bare videos to a bank: detect persons every second, then extract.

The detection step must give exactly what ``lfbtool detect`` gives, the bank must pass ``verify``,
and a run killed during detection or during extraction must resume to the same bank.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from lfbtool.data.ava import read_proposals
from tests.conftest import run_in_process, run_lfbtool
from tests.extract_runs import CRASH_RUNNER, assert_same_bank, bank_keys, child_env
from tests.test_detect import DETECTOR, OwnVideos, own  # noqa: F401  (own: the module's videos fixture)


@pytest.fixture(scope="module")
def backbone_checkpoint(tiny_data) -> Path:
    return tiny_data.checkpoint  # any random SlowOnly-R50 detector checkpoint: the session's


def extract_args(own: OwnVideos, checkpoint: Path, out: Path, *extra: str) -> list[str]:  # noqa: F811
    return ["extract", "--out", str(out), "--videos-root", str(own.videos), "--keyframes", "every-second",
            "--detector", DETECTOR, "--detector-checkpoint", str(own.checkpoint), "--detector-min-size", "64",
            "--detector-max-size", "64", "--max-per-frame", "3", "--checkpoint", str(checkpoint),
            "--clip-len", "4", "--frame-interval", "2", "--short-side", "32", "--segment-size", "2",
            "--batch-size", "1", "--num-workers", "0", "--device", "cpu", *extra]


@pytest.fixture(scope="module")
def one_command_bank(own, backbone_checkpoint, tmp_path_factory) -> Path:  # noqa: F811
    out = tmp_path_factory.mktemp("own_bank")
    done = run_lfbtool(extract_args(own, backbone_checkpoint, out))
    assert done.returncode == 0, done.stderr
    return out


def test_bare_videos_become_a_verified_bank(own, one_command_bank, tmp_path):  # noqa: F811
    bank = one_command_bank / "lfb_train.h5"
    checked = run_lfbtool(["verify", str(bank)])
    assert checked.returncode == 0, checked.stderr
    detected = tmp_path / "persons.pkl"  # the same detection through `lfbtool detect`
    alone = run_lfbtool(["detect", "--out", str(detected), "--videos-root", str(own.videos), "--detector", DETECTOR,
                         "--detector-checkpoint", str(own.checkpoint), "--min-size", "64", "--max-size", "64",
                         "--max-per-frame", "3", "--clip-len", "4", "--frame-interval", "2", "--device", "cpu"])
    assert alone.returncode == 0, alone.stderr
    persons = read_proposals(detected)
    assert (one_command_bank / "persons_train.pkl").read_bytes() == detected.read_bytes()
    assert bank_keys(bank) == sorted(key for key, boxes in persons.items() if len(boxes))
    info = run_lfbtool(["inspect", str(bank), "--json"])
    import json

    config = json.loads(info.stdout)["config"]
    assert config["keyframes"] == "every-second" and config["detection"]["detector"] == DETECTOR
    assert config["detection"]["detector_checkpoint_sha256"] and config["timestamp_start"] == 0 and config["fps"] == "auto"


@pytest.mark.parametrize(("point", "count"), [("detect", "3"), ("forward", "3")])
def test_killed_then_resumed_equals_the_uninterrupted_bank(own, backbone_checkpoint, one_command_bank,  # noqa: F811
                                                           tmp_path, capsys, point, count):
    out = tmp_path / "out"
    args = extract_args(own, backbone_checkpoint, out)
    crashed = subprocess.run([sys.executable, str(CRASH_RUNNER), *args], capture_output=True, text=True,
                             timeout=300, env=child_env(LFB_CRASH_AT=point, LFB_CRASH_N=count))
    assert crashed.returncode == -9, crashed.stderr
    assert not (out / "lfb_train.h5").exists()
    resumed = run_in_process([*args, "--resume"], capsys)  # the killed run was a process; its resume needs none
    assert resumed.returncode == 0, resumed.stderr
    assert_same_bank(one_command_bank / "lfb_train.h5", out / "lfb_train.h5")
