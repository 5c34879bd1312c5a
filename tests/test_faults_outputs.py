"""Outputs of merge, import and export under hostile conditions (issue 20): two commands writing one
output, export directories replaced or interrupted, a killed export's temporaries, read-only
filesystems, lock files lfbtool did not write. Each case: exit code, exactly one error line, and
nothing finished-looking or half-written left."""

from __future__ import annotations

import errno
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from lfbtool._io import atomic
from lfbtool._io.lock import LOCK_NAME, RunLock
from lfbtool.bank import export as export_mod
from lfbtool.bank import writer as writer_mod
from lfbtool.bank.export import export_npz_dir
from lfbtool.bank.writer import BankWriter
from lfbtool.cli import main
from lfbtool.errors import LfbError, RunError
from tests.extract_runs import bank_keys, child_env, wait_until
from tests.test_faults import FAULT_RUNNER, dead_pid, lfbtool, one_error_line

C = 8


def write_bank(path: Path, keys: list[tuple[str, int]], seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    with BankWriter(path, feature_dim=C, dtype="float32") as writer:
        for video, ts in sorted(keys):
            writer.append(video, ts, rng.standard_normal((2, C)), rng.random((2, 4)), rng.random(2))
    return path


def run_main(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture, *args: str) -> subprocess.CompletedProcess:
    """The CLI entry point in this process (no start-up cost), as a CompletedProcess for one_error_line."""
    capsys.readouterr()
    monkeypatch.setattr(sys, "argv", ["lfbtool", *args])
    with pytest.raises(SystemExit) as stopped:
        main()
    out, err = capsys.readouterr()
    return subprocess.CompletedProcess(args, int(stopped.value.code or 0), out, err)


def temporaries(directory: Path) -> list[Path]:
    return [p for p in directory.rglob("*") if ".tmp-" in p.name]


# --- two commands, one output (item 1) ------------------------------------------------------------


def test_two_merges_into_one_new_output_the_second_is_refused(tmp_path) -> None:
    train, val = write_bank(tmp_path / "train.h5", [("a", 1), ("a", 2)]), write_bank(tmp_path / "val.h5", [("b", 1)], 1)
    out, pause = tmp_path / "out.h5", tmp_path / "pause"
    pause.mkdir()
    # the slow merge has passed every check of OUT and is held just before it publishes its bank
    slow = subprocess.Popen([sys.executable, str(FAULT_RUNNER), "merge", str(train), str(val), "-o", str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=child_env(LFB_FAULT="publish-pause", LFB_PAUSE_DIR=str(pause)))
    try:
        wait_until((pause / "paused").exists, slow, "the slow merge reaching the pause", timeout=120)
        assert not out.exists()
        fast = lfbtool(["merge", str(val), "-o", str(out)])
        assert fast.returncode == 0, fast.stderr
        (pause / "go").touch()
        _, stderr = slow.communicate(timeout=120)
    finally:
        if slow.poll() is None:
            slow.kill()
    one_error_line(subprocess.CompletedProcess([], slow.returncode, "", stderr), 2, str(out),
                   "already exists; pass --force")
    assert bank_keys(out) == [("b", 1)]  # the first finished merge's bank, untouched
    assert temporaries(tmp_path) == []


def _write_other(path: Path) -> None:
    if path.suffix in (".h5", ".pkl"):
        path.write_bytes(b"theirs")
    else:
        path.mkdir()
        (path / "theirs.npz").write_bytes(b"theirs")


@pytest.mark.parametrize("command", ["import", "export mmaction-pkl", "export npz-dir"])
def test_output_written_meanwhile_by_another_command_is_kept(command, tmp_path, monkeypatch, capsys) -> None:
    """The output appears between this command's check and its publish: refused at the publish."""
    bank = write_bank(tmp_path / "lfb_train.h5", [("a", 1)])
    pkl = tmp_path / "lfb_train.pkl"
    torch.save({"a": {1: torch.ones(2, C)}}, pkl)
    out = tmp_path / {"import": "out.h5", "export mmaction-pkl": "out.pkl", "export npz-dir": "npz"}[command]
    owner, name = {"import": (writer_mod, "publish"), "export mmaction-pkl": (atomic, "publish"),
                   "export npz-dir": (export_mod, "publish_directory")}[command]
    real = getattr(owner, name)

    def late(tmp, path, **kwargs):
        _write_other(path)
        return real(tmp, path, **kwargs)

    monkeypatch.setattr(owner, name, late)
    args = (["import", str(pkl)] if command == "import" else
            ["export", str(bank), "--format", command.split()[1]]) + ["-o", str(out)]
    done = run_main(monkeypatch, capsys, *args)
    one_error_line(done, 2, str(out), "already exists; pass --force")
    assert (out.read_bytes() if out.is_file() else (out / "theirs.npz").read_bytes()) == b"theirs"
    assert temporaries(tmp_path) == []


# --- export --format npz-dir as one directory (items 5, 12) ---------------------------------------


def test_npz_export_force_replaces_the_whole_directory(tmp_path, monkeypatch, capsys) -> None:
    first = write_bank(tmp_path / "first.h5", [("a", 1), ("b", 1), ("c", 1)])
    second = write_bank(tmp_path / "second.h5", [("d", 1)], 1)
    out = tmp_path / "npz"
    assert run_main(monkeypatch, capsys, "export", str(first), "--format", "npz-dir", "-o", str(out)).returncode == 0
    again = run_main(monkeypatch, capsys, "export", str(second), "--format", "npz-dir", "-o", str(out))
    one_error_line(again, 2, str(out), "already exists; pass --force")
    assert sorted(p.name for p in out.iterdir()) == ["a.npz", "b.npz", "bank.json", "c.npz"]
    forced = run_main(monkeypatch, capsys, "export", str(second), "--format", "npz-dir", "-o", str(out), "--force")
    assert forced.returncode == 0, forced.stderr
    assert sorted(p.name for p in out.iterdir()) == ["bank.json", "d.npz"]
    assert json.loads((out / "bank.json").read_text())["videos"] == ["d"]
    assert temporaries(tmp_path) == []
    (out / "notes.txt").write_text("mine")  # --force replaces an export, never a directory of other files
    foreign = run_main(monkeypatch, capsys, "export", str(first), "--format", "npz-dir", "-o", str(out), "--force")
    one_error_line(foreign, 2, "'notes.txt', which no export writes")
    assert sorted(p.name for p in out.iterdir()) == ["bank.json", "d.npz", "notes.txt"]
    monkeypatch.chdir(out)  # renamed over, the shell would sit in a deleted directory
    here = run_main(monkeypatch, capsys, "export", str(first), "--format", "npz-dir", "-o", ".", "--force")
    one_error_line(here, 2, ".: is the current directory or holds it")


@pytest.mark.parametrize("earlier", [False, True])
def test_interrupted_npz_export_leaves_no_partial_directory(earlier, tmp_path, monkeypatch) -> None:
    bank = write_bank(tmp_path / "bank.h5", [("a", 1), ("b", 1), ("c", 1)])
    out = tmp_path / "npz"
    if earlier:
        export_npz_dir(write_bank(tmp_path / "old.h5", [("z", 1)], 1), out)
    saved = []
    real_savez = np.savez

    def savez(handle, **arrays):
        if len(saved) == 1:
            raise KeyboardInterrupt  # Ctrl-C while the 2nd video is written
        saved.append(handle)
        real_savez(handle, **arrays)

    monkeypatch.setattr(export_mod.np, "savez", savez)
    with pytest.raises(KeyboardInterrupt):
        export_npz_dir(bank, out, overwrite=True)
    assert len(saved) == 1
    if earlier:  # the earlier export, whole and alone
        assert sorted(p.name for p in out.iterdir()) == ["bank.json", "z.npz"]
    else:
        assert not out.exists()
    assert temporaries(tmp_path) == []


def test_a_killed_exports_temporaries_are_removed_by_the_next_export(tmp_path) -> None:
    bank = write_bank(tmp_path / "bank.h5", [("a", 1)])
    host = socket.gethostname()
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        dead, alive = f"tmp-{host}-{dead_pid()}", f"tmp-{host}-{live.pid}"
        (tmp_path / f"npz.{dead}").mkdir()  # what kill -9 during an npz-dir export leaves
        (tmp_path / f"npz.{dead}" / "a.npz").write_bytes(b"half")
        (tmp_path / f"npz.old.{dead}").mkdir()  # killed between the two renames of --force
        (tmp_path / f"lfb.pkl.{dead}").write_bytes(b"half")
        (tmp_path / f"lfb.pkl.{alive}").write_bytes(b"a live export's")
        for format, out in (("npz-dir", "npz"), ("mmaction-pkl", "lfb.pkl")):
            done = lfbtool(["export", str(bank), "--format", format, "-o", str(tmp_path / out)])
            assert done.returncode == 0, done.stderr
        assert [p.name for p in temporaries(tmp_path)] == [f"lfb.pkl.{alive}"]
    finally:
        live.kill()
        live.wait()


# --- read-only filesystems (item 8) ---------------------------------------------------------------


@pytest.fixture
def read_only(tmp_path):
    """A read-only tmpfs (root only; elsewhere test_cleanup_never_masks_the_write_error covers the path)."""
    mount = tmp_path / "ro"
    mount.mkdir()
    made = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k,ro", "tmpfs", str(mount)], capture_output=True)
    if made.returncode != 0:
        pytest.skip("cannot mount a tmpfs here (needs root)")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def test_read_only_filesystem_is_one_line_naming_the_file(read_only, tmp_path, monkeypatch, capsys) -> None:
    from lfbtool.recognize.gradcam_render import Panel, write_gradcam_files

    bank = write_bank(tmp_path / "lfb_train.h5", [("a", 1)])
    pkl = tmp_path / "lfb_train.pkl"
    torch.save({"a": {1: torch.ones(2, C)}}, pkl)
    commands = {
        "merged.h5": ["merge", str(bank), "-o", str(read_only / "merged.h5")],
        "imported.h5": ["import", str(pkl), "-o", str(read_only / "imported.h5")],
        "lfb.pkl": ["export", str(bank), "--format", "mmaction-pkl", "-o", str(read_only / "lfb.pkl")],
        "npz": ["export", str(bank), "--format", "npz-dir", "-o", str(read_only / "npz")],
        "sub": ["export", str(bank), "--format", "npz-dir", "-o", str(read_only / "sub" / "npz")],
    }
    for name, args in commands.items():
        one_error_line(run_main(monkeypatch, capsys, *args), 1, str(read_only / name), "read-only file system")
    for directory in (read_only, read_only / "cams"):
        with pytest.raises(RunError, match="read-only file system") as caught:
            write_gradcam_files(directory, "clip", [Panel(np.zeros((3, 2, 8, 8), np.uint8), np.zeros((2, 8, 8)), "x")],
                                ["x"])
        assert str(directory) in str(caught.value) and "\n" not in str(caught.value)
    assert list(read_only.iterdir()) == []


def test_cleanup_never_masks_the_write_error(tmp_path, monkeypatch) -> None:
    """Injected: the write fails with EROFS and so does every unlink, as on a read-only mount."""

    def read_only(*args, **kwargs):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS))

    monkeypatch.setattr(atomic, "open", read_only, raising=False)
    monkeypatch.setattr(Path, "unlink", read_only)
    with pytest.raises(RunError, match=r"out\.json: cannot write \(read-only file system\)"):
        atomic.write_json_atomic(tmp_path / "out.json", {"a": 1})


# --- lock files lfbtool did not write (item 8) ----------------------------------------------------


@pytest.mark.parametrize("holder", [
    {"host": "here", "pid": "abc", "command": "x"},
    {"host": 5, "pid": 1, "command": "x"},
    {"host": "here", "pid": 2**70},
    {"host": "here", "pid": 1, "started": "yesterday"},
])
def test_lock_with_fields_of_the_wrong_type_is_one_line(holder, tmp_path, monkeypatch, capsys) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / LOCK_NAME).write_text(json.dumps(holder))
    with pytest.raises(LfbError, match="not a lock file lfbtool wrote") as caught:
        RunLock(out, "test").acquire()
    assert "delete the lock file" in str(caught.value)
    done = run_main(monkeypatch, capsys, "merge", str(out))
    one_error_line(done, 2, str(out / LOCK_NAME), "not a lock file lfbtool wrote")
    assert json.loads((out / LOCK_NAME).read_text()) == holder  # left for the user to judge
