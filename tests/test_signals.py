"""Ctrl-C (SIGINT) and SIGTERM (issue 20, point 6): a real process held at a known point inside its
work gets the signal; it ends with exit 130 / 143 and exactly one line naming the command, leaves no
temporary and no lock, and a rerun (``--resume`` for extract) gives the uninterrupted result.
An interrupt during start-up (while the CLI is imported) is the same one line."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from lfbtool._io.lock import LOCK_NAME
from tests.conftest import SEGMENT, run_in_process
from tests.extract_runs import assert_same_bank, child_env, read_bank, wait_until
from tests.test_faults import FAULT_RUNNER, one_error_line

NAMES = {signal.SIGINT: "interrupted (SIGINT)", signal.SIGTERM: "terminated (SIGTERM)"}


def temporaries(directory: Path) -> list[Path]:
    return [p for p in directory.rglob("*") if ".tmp-" in p.name]


def _default_signals() -> None:
    """In the child before exec: SIGINT as a terminal delivers it, even where this runner ignores it."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _own_group() -> None:
    """:func:`_default_signals` in a process group of its own, which a Ctrl-C at a terminal reaches whole."""
    _default_signals()
    os.setpgrp()


def signal_when_paused(args: list[str], fault: str, n: int, pause: Path, signum: int,
                       check_paused=None, *, group: bool = False) -> subprocess.CompletedProcess:
    """Run ``lfbtool ARGS`` with ``fault`` (a pause) at its ``n``th event; once it waits there, call
    ``check_paused()`` and send ``signum`` (``group``: to its whole process group, DataLoader workers
    included, as a terminal does); the finished process."""
    pause.mkdir()
    env = child_env(LFB_FAULT=fault, LFB_FAULT_N=str(n), LFB_PAUSE_DIR=str(pause))
    proc = subprocess.Popen([sys.executable, str(FAULT_RUNNER), *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env, preexec_fn=_own_group if group else _default_signals)
    try:
        wait_until((pause / "paused").exists, proc, "the run reaching the pause", timeout=240)
        if check_paused is not None:
            check_paused()
        if group:
            os.killpg(proc.pid, signum)
        else:
            proc.send_signal(signum)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


# SIGTERM here; SIGINT to a whole extract process group (workers too) is the next test.
@pytest.mark.parametrize("signum", [signal.SIGTERM])
def test_signal_during_extract_then_resume_gives_the_reference(signum, tiny_data, reference, tmp_path, capsys) -> None:
    out = tmp_path / "out"
    args = tiny_data.extract_args(out, *SEGMENT)

    def inside_the_loop() -> None:  # 4th forward: segment 0 finished, segment 1 open under a temporary name
        assert (out / LOCK_NAME).exists()
        assert temporaries(out), list(out.rglob("*"))

    stopped = signal_when_paused(args, "pause", 4, tmp_path / "pause", signum, inside_the_loop)
    one_error_line(stopped, 128 + signum, f"lfbtool extract {NAMES[signum]}", "--resume")
    assert not temporaries(out), temporaries(out)
    assert not (out / LOCK_NAME).exists()
    assert not (out / "lfb_train.h5").exists()
    assert (out / "shards" / "train-a001-r00000-s000000.h5").exists()  # finished work is kept

    resumed = run_in_process(args + ["--resume"], capsys)
    assert resumed.returncode == 0, resumed.stderr
    assert_same_bank(reference, out / "lfb_train.h5")


def test_ctrl_c_to_the_process_group_with_dataloader_workers(tiny_data, reference, tmp_path, capsys) -> None:
    """A terminal's Ctrl-C reaches the DataLoader workers too: they end quietly (no traceback of
    theirs), the main process cleans up and says so once."""
    out = tmp_path / "out"
    args = tiny_data.extract_args(out, *SEGMENT)
    args[args.index("--num-workers") + 1] = "2"
    stopped = signal_when_paused(args, "pause", 4, tmp_path / "pause", signal.SIGINT, group=True)
    one_error_line(stopped, 130, "lfbtool extract interrupted (SIGINT)")
    assert not temporaries(out) and not (out / LOCK_NAME).exists()
    resumed = run_in_process(args + ["--resume"], capsys)
    assert resumed.returncode == 0, resumed.stderr
    assert_same_bank(reference, out / "lfb_train.h5")


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_signal_during_merge_then_merge_gives_the_reference(signum, reference, no_merge_run, tmp_path, capsys) -> None:
    out = tmp_path / "out"
    shutil.copytree(no_merge_run.out, out)  # what `extract --no-merge` (segments of 2) leaves
    shards = sorted(p.name for p in (out / "shards").iterdir())

    def before_the_publish() -> None:  # the merged bank complete under its temporary name
        assert (out / LOCK_NAME).exists()
        assert [p.name for p in temporaries(out)] and all(p.name.startswith("lfb_train.h5.tmp-") for p in temporaries(out))

    stopped = signal_when_paused(["merge", str(out), "--mode", "train"], "publish-pause", 1, tmp_path / "pause",
                                 signum, before_the_publish)
    one_error_line(stopped, 128 + signum, f"lfbtool merge {NAMES[signum]}")
    assert not temporaries(out) and not (out / LOCK_NAME).exists() and not (out / "lfb_train.h5").exists()
    assert sorted(p.name for p in (out / "shards").iterdir()) == shards

    merged = run_in_process(["merge", str(out), "--mode", "train"], capsys)
    assert merged.returncode == 0, merged.stderr
    assert_same_bank(reference, out / "lfb_train.h5")


@pytest.mark.parametrize(("form", "signum"), [("npz-dir", signal.SIGTERM), ("mmaction-pkl", signal.SIGINT)])
def test_signal_during_export_leaves_nothing(form, signum, reference, tmp_path, capsys) -> None:
    target = tmp_path / ("npz" if form == "npz-dir" else "lfb.pkl")
    args = ["export", str(reference), "--format", form, "-o", str(target)]

    def before_the_publish() -> None:
        assert temporaries(tmp_path), list(tmp_path.iterdir())

    stopped = signal_when_paused(args, "export-pause", 1, tmp_path / "pause", signum, before_the_publish)
    one_error_line(stopped, 128 + signum, f"lfbtool export {NAMES[signum]}")
    assert not temporaries(tmp_path) and not target.exists()

    again = run_in_process(args, capsys)
    assert again.returncode == 0, again.stderr
    if form == "npz-dir":
        import numpy as np

        bank = read_bank(reference)
        stored = np.concatenate([np.load(target / f"{video}.npz")["features"] for video in
                                 sorted(v.decode() if isinstance(v, bytes) else v for v in bank["videos"])])
        assert stored.tobytes() == bank["features"].tobytes()


# Sends itself SIGINT while `lfbtool.cli` is being imported, as a Ctrl-C during start-up would arrive.
DURING_IMPORT = """
import os, signal, sys
class Hook:
    def find_spec(self, name, path=None, target=None):
        if name == "lfbtool.cli":
            os.kill(os.getpid(), signal.SIG)
        return None
sys.meta_path.insert(0, Hook())
sys.argv = ["lfbtool", "verify", "x.h5"]
from lfbtool.__main__ import main
main()
"""


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_signal_during_start_up_is_one_line(signum) -> None:
    code = DURING_IMPORT.replace("signal.SIG)", f"signal.{signal.Signals(signum).name})")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          env=child_env(), preexec_fn=_default_signals)
    one_error_line(done, 128 + signum, f"lfbtool verify {NAMES[signum]}")
    assert "Traceback" not in done.stderr


def test_keyboard_interrupt_inside_a_command_is_one_line(monkeypatch, capsys) -> None:
    """Typer turns a KeyboardInterrupt into a silent exit 130; the entry point still says so."""
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("lfbtool.bank.verify.check_bank", interrupted)
    before = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    done = run_in_process(["verify", "x.h5"], capsys)
    one_error_line(done, 130, "lfbtool verify interrupted (SIGINT)")
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == before  # given back


def test_usage_errors_are_one_line(capsys) -> None:
    done = run_in_process(["verify", "--no-such-option", "x.h5"], capsys)
    one_error_line(done, 2, "No such option: --no-such-option", "lfbtool verify --help")
    done = run_in_process(["extract", "--num-workers", "many"], capsys)
    one_error_line(done, 2, "--num-workers")


def test_sigterm_to_torchrun_each_rank_cleans_up(tiny_data, reference, tmp_path, capsys) -> None:
    """torchrun forwards SIGTERM to its ranks: both are held at their 2nd forward, each with a segment
    open under its temporary name; each removes its own, rank 0 releases the lock, one line is ours
    (torchrun adds its own report); --resume then gives the reference bank."""
    out, pause = tmp_path / "out", tmp_path / "pause"
    pause.mkdir()
    args = tiny_data.extract_args(out, *SEGMENT, "--device", "cpu")
    env = child_env(LFB_FAULT="pause", LFB_FAULT_N="2", LFB_PAUSE_DIR=str(pause))
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(FAULT_RUNNER), *args]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            preexec_fn=_default_signals)
    try:
        wait_until(lambda: len([p for p in temporaries(out) if "-s000000.h5.tmp-" in p.name]) >= 2, proc,
                   "both ranks reaching the pause inside a segment", timeout=240)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    ours = [line for line in err.splitlines() if line.startswith("error: ")]
    assert ours == ["error: lfbtool extract terminated (SIGTERM); finished parts are kept, temporaries removed; "
                    "rerun with --resume to continue"], err
    assert not temporaries(out) and not (out / LOCK_NAME).exists()
    resumed = run_in_process(args + ["--resume"], capsys)
    assert resumed.returncode == 0, resumed.stderr
    assert_same_bank(reference, out / "lfb_train.h5")


def test_a_signal_while_a_segment_is_started_leaves_no_temporary(tmp_path, monkeypatch) -> None:
    """The window the torchrun test hits: the signal arrives inside BankWriter's constructor (the file
    exists, the caller holds no writer yet to abort), or just after it (the PartWriter holds none yet)."""
    from lfbtool.bank.writer import BankWriter
    from lfbtool.extract._segments import segment_parts
    from lfbtool.runs.parts import RunPlan
    from lfbtool.runtime.stopping import Stopped

    def stopped(*args, **kwargs):
        raise Stopped(signal.SIGTERM)

    with monkeypatch.context() as patch:
        patch.setattr(BankWriter, "_start", stopped)
        with pytest.raises(Stopped):
            BankWriter(tmp_path / "a.h5", feature_dim=4)
    assert not temporaries(tmp_path)

    parts = segment_parts(tmp_path / "out", "train", {"feature_dim": 4, "dtype": "float32"})
    writer = parts.writer(RunPlan(complete=False, attempt=1), 0, 2)
    real_start = type(parts.format).start

    def started_then_stopped(self, path):
        real_start(self, path)  # the temporary exists, its builder is lost
        raise Stopped(signal.SIGINT)

    monkeypatch.setattr(type(parts.format), "start", started_then_stopped)
    with pytest.raises(Stopped):
        writer.append(("v", 902), (np.ones((1, 4), np.float32), np.float32([[0, 0, 1, 1]]), np.float32([1])))
    assert temporaries(tmp_path)
    writer.abort()
    assert not temporaries(tmp_path)
