"""``lfbtool._io.lock.process_alive`` on processes the kernel still lists but that have exited (zombies),
and on a live process whose command name looks like a /proc/PID/stat state field."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lfbtool._io.lock import LOCK_NAME, RunLock, _start_time, process_alive, temporary_is_dead

pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux /proc")


def proc_state(pid: int) -> str:
    """The state letter of ``pid`` in /proc/PID/stat, read independently of lfbtool._io.lock ("" once reaped)."""
    try:
        text = Path(f"/proc/{pid}/stat").read_bytes()
    except FileNotFoundError:
        return ""
    return text[text.rindex(b")") + 2:].split()[0].decode()


def wait_for_state(pid: int, states: str, timeout: float = 60.0) -> str:
    deadline = time.time() + timeout
    while proc_state(pid) not in states and time.time() < deadline:
        time.sleep(0.02)
    return proc_state(pid)


def test_a_zombie_is_not_alive_for_the_lock_or_its_temporaries(tmp_path) -> None:
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(0.2)"])
    try:
        start = _start_time(child.pid)
        assert start and process_alive(child.pid, start)  # running: alive
        assert wait_for_state(child.pid, "Z") == "Z"  # exited, never reaped (no wait/poll on it)
        os.kill(child.pid, 0)  # the kernel still answers for the pid: what the old check relied on
        assert not process_alive(child.pid) and not process_alive(child.pid, start)
        temporary = tmp_path / f"train-a001-r00000-s000000.h5.tmp-{socket.gethostname()}-{child.pid}"
        assert temporary_is_dead(temporary)
        (tmp_path / LOCK_NAME).write_text(json.dumps({"host": socket.gethostname(), "pid": child.pid, "start": start,
                                                      "started": 0, "command": "lfbtool extract --mode train"}))
        with RunLock(tmp_path, "test") as lock:
            assert lock.note and f"pid {child.pid}" in lock.note and "no longer running" in lock.note
        assert proc_state(child.pid) == "Z"  # nothing above reaped it
    finally:
        child.wait()
    assert proc_state(child.pid) == ""


def test_a_command_name_with_parentheses_and_spaces_is_parsed_after_the_last_paren(tmp_path) -> None:
    # the name "x) Z (y" makes a naive split at the first ")" read state "Z" for a sleeping process
    code = ("import pathlib, sys, time; pathlib.Path('/proc/self/comm').write_text('x) Z (y'); "
            "sys.stdout.write('ready\\n'); sys.stdout.flush(); time.sleep(60)")
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline() == "ready\n"
        assert Path(f"/proc/{child.pid}/comm").read_text() == "x) Z (y\n"
        assert wait_for_state(child.pid, "S") == "S"
        start = _start_time(child.pid)
        assert start.isdigit() and process_alive(child.pid, start)
        assert not process_alive(child.pid, str(int(start) + 1))  # pid reused by a later process
        assert not temporary_is_dead(tmp_path / f"x.h5.tmp-{socket.gethostname()}-{child.pid}")
    finally:
        child.kill()
        child.wait()
    assert not process_alive(child.pid)
