"""Crash safety: SIGKILL during a forward, and between a segment's write and its rename; then --resume
with another number of processes gives the uninterrupted bank, every keyframe extracted exactly once.
A run killed and not yet reaped (a zombie still holding the lock) does not block the resume.

The killed runs are processes of their own; a one-process resume runs the console script in this
process (tests.conftest.run_in_process, one thread as the reference's process had).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

from lfbtool._io.lock import LOCK_NAME
from lfbtool.bank.verify import check_bank
from tests.conftest import SEGMENT, run_in_process, run_lfbtool
from tests.extract_runs import (
    CRASH_RUNNER,
    assert_same_bank,
    child_env,
    expected_keys,
    run,
    segments,
    summary_counts,
    torchrun_command,
    wait_until,
)
from tests.test_lock import proc_state, wait_for_state

FAULT_RUNNER = Path(__file__).with_name("fault_runner.py")


def assert_extracted_exactly_once(out: Path, keys: list, resume_stdout: str, attempt: int = 2) -> None:
    """Finished segments (kept with --keep-shards) hold every key once; the resumed run extracted only the
    keys that no finished segment of the killed run held."""
    found = segments(out / "shards")
    stored = [k for seg in found.values() for k in seg]
    assert sorted(stored) == keys and len(stored) == len(set(stored))
    killed = [k for name, seg in found.items() if name.startswith("train-a001-") for k in seg]
    record = json.loads((out / "shards" / f"train-a{attempt:03d}.json").read_text())
    assert sum(item["keys"] for item in record["prior_segments"]) == len(killed)
    assert summary_counts(resume_stdout) == (len(keys), len(keys) - len(killed), len(killed))
    assert not [p for p in (out / "shards").iterdir() if ".tmp-" in p.name]


def test_kill_during_forward_then_resume_with_two_processes(tiny_data, reference, tmp_path, capsys) -> None:
    out = tmp_path / "out"
    args = tiny_data.extract_args(out, *SEGMENT)
    killed = run([sys.executable, str(CRASH_RUNNER), *args], LFB_CRASH_AT="forward", LFB_CRASH_N="4")
    assert killed.returncode == -signal.SIGKILL
    keys = expected_keys(tiny_data.example)
    # keyframes 1-2 are in a finished segment; 3 was in the segment being written; 4 was in the forward
    assert segments(out / "shards") == {"train-a001-r00000-s000000.h5": keys[:2]}
    assert not (out / "lfb_train.h5").exists()

    again = run_in_process(args, capsys)  # refusals: before any work, no process of their own needed
    assert again.returncode == 2
    assert "--resume" in again.stderr and "--overwrite" in again.stderr and str(out) in again.stderr

    changed = run_in_process(args + ["--resume", "--clip-len", "2", "--proposal-score-threshold", "0.5"], capsys)
    assert changed.returncode == 2 and changed.stderr.count("\n") == 1
    assert "refusing to resume" in changed.stderr
    assert "clip_len 2 now, 4 in attempt 1" in changed.stderr and "score_threshold 0.5 now, 0.9 in attempt 1" in changed.stderr

    resumed = run(torchrun_command(["--standalone", "--nproc_per_node=2"],
                                   args + ["--resume", "--keep-shards", "--device", "cpu"]))
    assert resumed.returncode == 0, resumed.stderr
    assert_same_bank(reference, out / "lfb_train.h5")
    check_bank(out / "lfb_train.h5")
    assert_extracted_exactly_once(out, keys, resumed.stdout)
    assert json.loads((out / "shards" / "train-a002.json").read_text())["world_size"] == 2

    finished = run_in_process(args + ["--resume"], capsys)
    assert finished.returncode == 0 and "already complete" in finished.stdout


def test_kill_between_segment_write_and_rename_then_resume_with_one_process(tiny_data, reference, tmp_path, capsys) -> None:
    out = tmp_path / "out"
    args = tiny_data.extract_args(out, *SEGMENT)
    killed = run(torchrun_command(["--standalone", "--nproc_per_node=2"], args, crash=True),
                 LFB_CRASH_AT="rename", LFB_CRASH_N="2", LFB_CRASH_RANK="0")
    assert killed.returncode != 0
    keys = expected_keys(tiny_data.example)
    shards = out / "shards"
    # rank 0 (first 4 keys) finished segment 0 and died with segment 1 written but not renamed
    assert segments(shards)["train-a001-r00000-s000000.h5"] == keys[:2]
    assert not (shards / "train-a001-r00000-s000001.h5").exists()
    assert list(shards.glob("train-a001-r00000-s000001.h5.tmp-*"))
    assert not (out / "lfb_train.h5").exists()

    resumed = run_in_process(args + ["--resume", "--keep-shards"], capsys)
    assert resumed.returncode == 0, resumed.stderr
    assert_same_bank(reference, out / "lfb_train.h5")
    check_bank(out / "lfb_train.h5")
    assert_extracted_exactly_once(out, keys, resumed.stdout)
    assert json.loads((shards / "train-a002.json").read_text())["world_size"] == 1


def test_kill_twice_then_resume(tiny_data, reference, tmp_path, capsys) -> None:
    """A resumed run killed again is resumed again (attempt 3 keeps the segments of attempts 1 and 2)."""
    out = tmp_path / "out"
    args = tiny_data.extract_args(out, *SEGMENT)
    first = run([sys.executable, str(CRASH_RUNNER), *args], LFB_CRASH_AT="rename", LFB_CRASH_N="2")
    assert first.returncode == -signal.SIGKILL
    second = run([sys.executable, str(CRASH_RUNNER), *args, "--resume"], LFB_CRASH_AT="forward", LFB_CRASH_N="3")
    assert second.returncode == -signal.SIGKILL
    keys = expected_keys(tiny_data.example)
    assert segments(out / "shards") == {"train-a001-r00000-s000000.h5": keys[:2], "train-a002-r00000-s000000.h5": keys[2:4]}
    resumed = run_in_process(args + ["--resume", "--keep-shards"], capsys)
    assert resumed.returncode == 0, resumed.stderr
    assert_same_bank(reference, out / "lfb_train.h5")
    found = segments(out / "shards")
    stored = [k for seg in found.values() for k in seg]
    assert sorted(stored) == keys and len(stored) == len(set(stored))
    assert summary_counts(resumed.stdout) == (len(keys), len(keys) - 4, 4)


def test_kill_before_the_bank_rename_then_resume(tiny_data, reference, tmp_path, capsys) -> None:
    """Killed while merging: the half-made bank is dropped; the resume only merges, extracting nothing."""
    out = tmp_path / "out"
    args = tiny_data.extract_args(out, *SEGMENT)
    killed = run([sys.executable, str(CRASH_RUNNER), *args], LFB_CRASH_AT="bank-rename", LFB_CRASH_N="1")
    assert killed.returncode == -signal.SIGKILL
    assert not (out / "lfb_train.h5").exists() and list(out.glob("lfb_train.h5.tmp-*"))
    resumed = run_in_process(args + ["--resume"], capsys)
    assert resumed.returncode == 0, resumed.stderr
    keys = expected_keys(tiny_data.example)
    assert summary_counts(resumed.stdout) == (len(keys), 0, len(keys))
    assert_same_bank(reference, out / "lfb_train.h5")
    assert sorted(p.name for p in out.iterdir()) == ["lfb_train.h5"]  # no temporary, shards merged and removed


def test_killed_run_not_yet_reaped_does_not_block_the_resume(tiny_data, reference, tmp_path) -> None:
    """The holder is SIGKILLed inside its 4th forward and left a zombie (its parent, this test, does not
    wait for it): its lock and its live temporary count as gone, and --resume completes the bank."""
    out, pause = tmp_path / "out", tmp_path / "pause"
    pause.mkdir()
    args = tiny_data.extract_args(out, *SEGMENT)
    holder = subprocess.Popen([sys.executable, str(FAULT_RUNNER), *args], stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, env=child_env(LFB_FAULT="pause", LFB_FAULT_N="4",
                                                                    LFB_PAUSE_DIR=str(pause)))
    try:
        wait_until((pause / "paused").exists, holder, "the run reaching the pause")
        assert json.loads((out / LOCK_NAME).read_text())["pid"] == holder.pid
        os.kill(holder.pid, signal.SIGKILL)
        assert wait_for_state(holder.pid, "Z") == "Z"  # dead, not reaped: kill(pid, 0) still succeeds
        keys = expected_keys(tiny_data.example)
        assert segments(out / "shards") == {"train-a001-r00000-s000000.h5": keys[:2]}
        assert [p.name.split(".tmp-")[1] for p in (out / "shards").glob("*.tmp-*")] == [
            f"{socket.gethostname()}-{holder.pid}"]  # the zombie's segment 1, never finished
        resumed = run_lfbtool(args + ["--resume", "--keep-shards"])
        assert proc_state(holder.pid) == "Z"  # still unreaped while the resume ran
    finally:
        if holder.poll() is None:
            holder.kill()
        holder.wait()
    assert resumed.returncode == 0, resumed.stderr
    assert f"took over the lock of lfbtool extract --mode train (pid {holder.pid}" in resumed.stderr
    assert_same_bank(reference, out / "lfb_train.h5")
    assert_extracted_exactly_once(out, keys, resumed.stdout)  # the zombie's temporary was removed
    assert not (out / LOCK_NAME).exists()


def test_resume_with_batches_of_three_equals_the_uninterrupted_run(tiny_data, tmp_path, capsys, monkeypatch) -> None:
    """Batches are cut from the whole keyframe list (lfbtool.data.batching.plan_batches): a resume that
    starts inside a batch computes that whole batch again and writes only the missing keyframe, so every
    keyframe is computed in the batch of the uninterrupted run and the banks are bitwise equal."""
    from lfbtool.models.lfb_model import LFBFeatureModel

    batches = ("--segment-size", "2", "--batch-size", "3")
    uninterrupted = run_lfbtool(tiny_data.extract_args(tmp_path / "whole", *batches))
    assert uninterrupted.returncode == 0, uninterrupted.stderr
    out = tmp_path / "out"
    args = tiny_data.extract_args(out, *batches)
    # batches [a902 a903 a904] [b902 b903] [c902 c903]; killed inside the 3rd: segments {a902 a903}, {a904 b902}
    killed = run([sys.executable, str(CRASH_RUNNER), *args], LFB_CRASH_AT="forward", LFB_CRASH_N="3")
    assert killed.returncode == -signal.SIGKILL
    keys = expected_keys(tiny_data.example)
    assert [k for seg in segments(out / "shards").values() for k in seg] == keys[:4]

    sizes: list[int] = []
    forward = LFBFeatureModel.forward

    def counting(self, clips, rois):
        sizes.append(int(clips.shape[0]))
        return forward(self, clips, rois)

    monkeypatch.setattr(LFBFeatureModel, "forward", counting)
    resumed = run_in_process(args + ["--resume"], capsys)
    assert resumed.returncode == 0, resumed.stderr
    assert sizes == [2, 2]  # b903 with b902 (stored already, its rows dropped), as uninterrupted; not alone
    assert summary_counts(resumed.stdout) == (7, 3, 4)
    assert_same_bank(tmp_path / "whole" / "lfb_train.h5", out / "lfb_train.h5")
