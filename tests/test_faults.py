"""Fault injection: every fault and hostile input ends in one error line, a non-zero exit, no file that
looks finished, and (where data was being written) a --resume that gives the uninterrupted bank.

Disk full is made twice where the machine allows: by a real tiny tmpfs (root only) and by an injected
ENOSPC at the write call (tests/fault_runner.py). The table in docs/reliability.md lists these cases.
Faults happen in processes of their own; the resumes after them, and refusals, run the console script
in this process (tests.conftest.run_in_process, one thread as the reference's process had).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from lfbtool._io.lock import LOCK_NAME, RunLock
from lfbtool.bank import format as fmt
from lfbtool.bank.export import export_mmaction_pkl, export_npz_dir
from lfbtool.bank.merge import merge_banks
from lfbtool.bank.reader import FeatureBank
from lfbtool.bank.verify import check_bank
from lfbtool.bank.writer import BankWriter
from lfbtool.errors import LfbError, RunError
from lfbtool.extract._segments import BankSegments
from lfbtool.runs.parts import RunParts, RunPlan
from tests.conftest import SEGMENT, run_in_process
from tests.extract_runs import assert_same_bank, child_env, wait_until

FAULT_RUNNER = Path(__file__).with_name("fault_runner.py")


def lfbtool(args: list[str], fault: str | None = None, n: int = 1, timeout: int = 300) -> subprocess.CompletedProcess:
    command = [sys.executable, str(FAULT_RUNNER)] if fault else [sys.executable, "-m", "lfbtool"]
    env = child_env(LFB_FAULT=fault or "", LFB_FAULT_N=str(n))
    return subprocess.run([*command, *args], capture_output=True, text=True, timeout=timeout, env=env)


def one_error_line(done: subprocess.CompletedProcess, code: int, *needles: str) -> None:
    """Exit ``code``, stderr is exactly one ``error:`` line holding every needle, no traceback."""
    assert done.returncode == code, done.stderr
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), done.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


def nothing_finished(out: Path) -> None:
    """No bank, no temporary, no segment still under a temporary name."""
    assert not list(out.rglob("lfb_*.h5")), list(out.rglob("*"))
    assert not [p for p in out.rglob("*") if ".tmp-" in p.name]


def dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


# --- one run per OUT ------------------------------------------------------------------------------


def test_train_and_val_at_once_and_resume_during_a_live_run(tiny_data, reference, tmp_path, capsys) -> None:
    out, pause = tmp_path / "out", tmp_path / "pause"
    pause.mkdir()
    # the train run is held inside its 4th forward: segment 0 is finished, segment 1 is a live temporary
    train = subprocess.Popen([sys.executable, str(FAULT_RUNNER), *tiny_data.extract_args(out, *SEGMENT)],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             env=child_env(LFB_FAULT="pause", LFB_FAULT_N="4", LFB_PAUSE_DIR=str(pause)))
    try:
        wait_until((pause / "paused").exists, train, "the train run reaching the pause")
        holder = json.loads((out / LOCK_NAME).read_text())
        assert holder["pid"] == train.pid and holder["host"] == socket.gethostname()
        live = [p for p in (out / "shards").iterdir() if ".tmp-" in p.name]
        assert [p.name.split(".tmp-")[0] for p in live] == ["train-a001-r00000-s000001.h5"]
        val_args = [a if a != "train" else "val" for a in tiny_data.extract_args(out, *SEGMENT)]
        # the refusals come before any work: in this process (another pid, as another process would be)
        val = run_in_process(val_args, capsys)
        one_error_line(val, 2, str(out), "in use by lfbtool extract --mode train", f"pid {train.pid}")
        resumed = run_in_process(tiny_data.extract_args(out, *SEGMENT, "--resume"), capsys)
        one_error_line(resumed, 2, "in use by", f"pid {train.pid}")
        merged = lfbtool(["merge", str(out)])  # and one as a process of its own
        one_error_line(merged, 2, "in use by", f"pid {train.pid}")
        assert all(p.exists() for p in live)  # nobody touched the live run's temporary
        (pause / "go").touch()
        stdout, stderr = train.communicate(timeout=300)
    finally:
        if train.poll() is None:
            train.kill()
    assert train.returncode == 0, stderr
    assert not (out / LOCK_NAME).exists() and not (out / "lfb_val.h5").exists()
    assert_same_bank(reference, out / "lfb_train.h5")


def test_dead_holder_is_taken_over_other_host_never(tmp_path) -> None:
    lock_file = tmp_path / LOCK_NAME
    lock_file.write_text(json.dumps({"host": socket.gethostname(), "pid": dead_pid(), "started": 0,
                                     "command": "lfbtool extract --mode train"}))
    with RunLock(tmp_path, "test") as lock:
        assert lock.note and "no longer running" in lock.note
        assert json.loads(lock_file.read_text())["pid"] == os.getpid()
    assert not lock_file.exists()
    lock_file.write_text(json.dumps({"host": "some-other-node", "pid": 1, "started": 0, "command": "lfbtool merge"}))
    with pytest.raises(LfbError, match="in use by lfbtool merge .pid 1 on some-other-node.*delete the lock file"):
        RunLock(tmp_path, "test").acquire()
    assert json.loads(lock_file.read_text())["host"] == "some-other-node"


def test_only_temporaries_of_dead_processes_are_removed(tmp_path) -> None:
    host = socket.gethostname()
    live = tmp_path / f"train-a001-r00000-s000001.h5.tmp-{host}-{os.getpid()}"
    dead = tmp_path / f"train-a001-r00001-s000001.h5.tmp-{host}-{dead_pid()}"
    remote = tmp_path / "train-a001-r00002-s000001.h5.tmp-other-node-1"
    for path in (live, dead, remote):
        path.write_bytes(b"x")
    parts = RunParts(tmp_path, "train", BankSegments("train"), command="extract")
    assert parts.remove_dead_temporaries() == [dead]
    assert live.exists() and remote.exists() and not dead.exists()


def test_mode_names_every_shard_file(tmp_path) -> None:
    parts = RunParts(tmp_path, "val", BankSegments("val", {"feature_dim": 2, "mode": "train"}), command="extract")
    writer = parts.writer(RunPlan(complete=False, attempt=3), rank=1, segment_size=1)
    writer.append(("v", 902), (np.ones((1, 2)), np.zeros((1, 4)), np.ones(1)))
    writer.close(1)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["val-a003-r00001-s000000.h5", "val-a003-r00001.json"]
    assert fmt.read_header(tmp_path / "val-a003-r00001-s000000.h5").mode == "val"
    assert RunParts(tmp_path, "train", BankSegments("train"), command="extract").parts() == []


# --- hostile banks --------------------------------------------------------------------------------


def good_bank(path: Path) -> Path:
    with BankWriter(path, feature_dim=3, dtype="float32", mode="train") as writer:
        for video, ts, n in (("a", 902, 2), ("a", 903, 1), ("b", 902, 2)):
            rows = np.arange(n * 3, dtype=np.float32).reshape(n, 3) + ts
            writer.append(video, ts, rows, np.full((n, 4), 0.5, np.float32), np.full(n, 0.9, np.float32))
    return path


def rewrite(path: Path, name: str, data) -> None:
    """Replace an index dataset, with a matching sha256 (a consistent-looking, wrong index)."""
    with h5py.File(path, "r+") as handle:
        del handle[name]
        written = handle.create_dataset(name, data=data)
        written.attrs[fmt.DIGEST_ATTR] = fmt.index_digest(data if name == fmt.VIDEOS else np.asarray(data))


CORRUPT_INDEX = {
    "row offsets decrease": (fmt.KEY_ROW_OFFSETS, np.array([0, 3, 2, 5]), "offsets must never decrease"),
    "row offsets past the rows": (fmt.KEY_ROW_OFFSETS, np.array([0, 2, 3, 9]), "ends at 9 but /features has 5"),
    "video offsets count": (fmt.VIDEO_KEY_OFFSETS, np.array([0, 3]), "has 2 entries, expected 3"),
    "timestamps out of order": (fmt.TIMESTAMPS, np.array([903, 902, 902], np.int32), "key a,0902 follows a,0903"),
    "video names not strings": (fmt.VIDEOS, np.array([1, 2]), "/videos has dtype int64, expected strings"),
    "videos unsorted": (fmt.VIDEOS, ["b", "a"], "is out of order"),
}


@pytest.mark.parametrize("kind", sorted(CORRUPT_INDEX))
def test_corrupt_index_is_refused_by_merge_verify_and_reader(kind, tmp_path) -> None:
    name, data, message = CORRUPT_INDEX[kind]
    if name == fmt.VIDEOS and not isinstance(data, np.ndarray):
        data = np.array(data, dtype=object).astype(h5py.string_dtype("utf-8"))
    bad = good_bank(tmp_path / "bad.h5")
    rewrite(bad, name, data)
    other = good_bank(tmp_path / "other.h5")
    out = tmp_path / "merged.h5"
    for read in (lambda: merge_banks([other, bad], out), lambda: check_bank(bad), lambda: FeatureBank(bad)):
        with pytest.raises(LfbError, match=message) as caught:
            read()
        assert str(bad) in str(caught.value) and "\n" not in str(caught.value)
    assert not out.exists() and not list(tmp_path.glob("merged.h5.tmp-*"))


def test_merge_cli_refuses_a_corrupt_input_in_one_line(tmp_path) -> None:
    bad = good_bank(tmp_path / "bad.h5")
    rewrite(bad, fmt.KEY_ROW_OFFSETS, np.array([0, 3, 2, 5]))
    done = lfbtool(["merge", str(good_bank(tmp_path / "a.h5")), str(bad), "-o", str(tmp_path / "m.h5")])
    one_error_line(done, 2, str(bad), "never decrease")
    assert not (tmp_path / "m.h5").exists()


def test_merge_output_is_never_an_input_and_never_replaced_silently(tmp_path) -> None:
    a, b = good_bank(tmp_path / "a.h5"), good_bank(tmp_path / "b.h5")
    before = a.read_bytes()
    with pytest.raises(LfbError, match="is also an input"):
        merge_banks([a, b], a, overwrite=True)
    with pytest.raises(LfbError, match="already exists; pass --force"):
        merge_banks([b], a)
    assert a.read_bytes() == before
    stale = tmp_path / f"m.h5.tmp-{socket.gethostname()}-{dead_pid()}"
    stale.write_bytes(b"half")
    merge_banks([a], tmp_path / "m.h5")
    assert not stale.exists()


def flip_feature_byte(path: Path) -> None:
    with h5py.File(path, "r") as handle:
        offset = handle[fmt.FEATURES].id.get_chunk_info(0).byte_offset
    with open(path, "r+b") as raw:
        raw.seek(offset + 5)
        byte = raw.read(1)
        raw.seek(offset + 5)
        raw.write(bytes([byte[0] ^ 0x10]))


def test_flipped_feature_bytes_are_an_error_in_every_tool(tmp_path) -> None:
    bank = good_bank(tmp_path / "bank.h5")
    flip_feature_byte(bank)
    with pytest.raises(LfbError, match="/features rows 0-5 unreadable: damaged chunk"):
        check_bank(bank)
    with FeatureBank(bank) as reader:  # the index is intact: opening works, reading the rows does not
        with pytest.raises(LfbError, match="damaged chunk"):
            reader["a", 902]
    with pytest.raises(LfbError, match="damaged chunk"):
        merge_banks([bank], tmp_path / "m.h5")
    with pytest.raises(LfbError, match="damaged chunk"):
        export_npz_dir(bank, tmp_path / "npz")
    assert not (tmp_path / "m.h5").exists() and not list((tmp_path / "npz").glob("*.npz"))


def test_index_tampering_is_caught_by_its_checksum(tmp_path) -> None:
    bank = good_bank(tmp_path / "bank.h5")
    with h5py.File(bank, "r+") as handle:
        handle[fmt.TIMESTAMPS][2] = 905  # still a valid-looking index
    for read in (lambda: check_bank(bank), lambda: FeatureBank(bank), lambda: merge_banks([bank], tmp_path / "m.h5")):
        with pytest.raises(LfbError, match="/timestamps does not match its sha256 checksum"):
            read()


@pytest.mark.parametrize("how", ["external storage", "external link", "virtual dataset", "soft link"])
@pytest.mark.parametrize("version", [1, 2])
def test_storage_outside_the_file_is_refused(how, version, tmp_path) -> None:
    secret = tmp_path / "secret.bin"
    secret.write_bytes(np.arange(15, dtype=np.float32).tobytes())
    elsewhere = good_bank(tmp_path / "elsewhere.h5")
    bank = good_bank(tmp_path / "bank.h5")
    with h5py.File(bank, "r+") as handle:
        handle.attrs["format_version"] = version
        del handle[fmt.FEATURES]
        if how == "external storage":
            handle.create_dataset(fmt.FEATURES, shape=(5, 3), dtype=np.float32, external=[(str(secret), 0, 60)])
        elif how == "external link":
            handle[fmt.FEATURES] = h5py.ExternalLink(str(elsewhere), "/features")
        elif how == "soft link":
            handle.create_dataset("copy", data=np.zeros((5, 3), np.float32))
            handle[fmt.FEATURES] = h5py.SoftLink("/copy")
        else:
            layout = h5py.VirtualLayout(shape=(5, 3), dtype=np.float32)
            layout[:] = h5py.VirtualSource(str(elsewhere), "features", shape=(5, 3))
            handle.create_virtual_dataset(fmt.FEATURES, layout)
    for read in (lambda: check_bank(bank), lambda: FeatureBank(bank), lambda: merge_banks([bank], tmp_path / "m.h5"),
                 lambda: export_mmaction_pkl(bank, tmp_path / "x.pkl")):
        with pytest.raises(LfbError, match=r"/features (is stored in external|is a (ExternalLink|SoftLink)|is a virtual)"):
            read()


# --- disk full and other write failures ----------------------------------------------------------


@pytest.fixture
def tiny_disk(tmp_path):
    """A 256 KiB tmpfs (root only; skipped elsewhere, the injected-ENOSPC tests cover the same path)."""
    mount = tmp_path / "disk"
    mount.mkdir()
    made = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mount)], capture_output=True)
    if made.returncode != 0:
        pytest.skip("cannot mount a tmpfs here (needs root)")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def resize(mount: Path, size: str) -> None:
    subprocess.run(["mount", "-o", f"remount,size={size}", str(mount)], check=True)


def test_disk_full_at_a_segment_write_tmpfs(tiny_data, reference, tiny_disk, capsys) -> None:
    out = tiny_disk / "out"
    done = lfbtool(tiny_data.extract_args(out, *SEGMENT))
    one_error_line(done, 1, "no space left on device", "-a001-r00000-s000000.h5")
    nothing_finished(out)
    resize(tiny_disk, "64m")
    resumed = run_in_process(tiny_data.extract_args(out, *SEGMENT, "--resume"), capsys)
    assert resumed.returncode == 0, resumed.stderr
    assert_same_bank(reference, out / "lfb_train.h5")


def test_disk_full_at_the_merge_tmpfs(reference, no_merge_run, tiny_disk) -> None:
    out = tiny_disk / "out"
    resize(tiny_disk, "64m")
    shutil.copytree(no_merge_run.out, out)  # what `extract --no-merge` (segments of 2) leaves
    used = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    resize(tiny_disk, f"{used // 1024 + 300}k")  # room for the records, not for a merged bank
    failed = lfbtool(["merge", str(out)])
    one_error_line(failed, 1, "no space left on device", "lfb_train.h5")
    nothing_finished(out)
    resize(tiny_disk, "64m")
    merged = lfbtool(["merge", str(out)])
    assert merged.returncode == 0, merged.stderr
    assert_same_bank(reference, out / "lfb_train.h5")


@pytest.mark.parametrize(("fault", "where"), [
    ("segment-write", "-a001-r00000-s000001.h5"),
    ("manifest", "train-a001-r00000.json"),
    ("merge-write", "lfb_train.h5"),
])
def test_injected_disk_full_then_resume(fault, where, tiny_data, reference, tmp_path, capsys) -> None:
    out = tmp_path / "out"
    done = lfbtool(tiny_data.extract_args(out, *SEGMENT), fault=fault, n=2 if fault == "segment-write" else 1)
    one_error_line(done, 1, "no space left on device", where)
    nothing_finished(out)
    resumed = run_in_process(tiny_data.extract_args(out, *SEGMENT, "--resume"), capsys)
    assert resumed.returncode == 0, resumed.stderr
    assert_same_bank(reference, out / "lfb_train.h5")


def test_export_to_a_full_disk(tiny_disk, tmp_path) -> None:
    bank = tmp_path / "bank.h5"
    with BankWriter(bank, feature_dim=512, dtype="float32") as writer:
        for ts in range(200):
            writer.append("v", ts, np.ones((1, 512)), np.zeros((1, 4)), np.ones(1))
    for export, target in ((export_mmaction_pkl, tiny_disk / "lfb.pkl"), (export_npz_dir, tiny_disk / "npz")):
        with pytest.raises(RunError, match="no space left on device") as caught:
            export(bank, target)
        assert "\n" not in str(caught.value)
        assert not [p for p in tiny_disk.rglob("*") if p.is_file() and p.suffix in (".pkl", ".npz", ".json")
                    or ".tmp-" in p.name]
        shutil.rmtree(tiny_disk / "npz", ignore_errors=True)


# --- non-finite features --------------------------------------------------------------------------


def test_nan_features_stop_the_run_naming_the_keyframe(tiny_data, reference, tmp_path, capsys) -> None:
    out = tmp_path / "out"
    done = lfbtool(tiny_data.extract_args(out, *SEGMENT), fault="nan", n=3)
    third = sorted(reference_keys(reference))[2]
    one_error_line(done, 1, f"keyframe {third[0]},{third[1]:04d}", "NaN or Inf")
    nothing_finished(out)
    resumed = run_in_process(tiny_data.extract_args(out, *SEGMENT, "--resume"), capsys)
    assert resumed.returncode == 0, resumed.stderr
    assert_same_bank(reference, out / "lfb_train.h5")


def reference_keys(bank: Path) -> list[tuple[str, int]]:
    return fmt.read_header(bank).keys()
