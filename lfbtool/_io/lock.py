"""One run per output directory, and whose temporary file is whose.

The lock is a file created with ``O_CREAT | O_EXCL`` (atomic on local and NFSv3+ filesystems), holding
the holder's host, pid, process start time and command. A second command on a live OUT is refused
naming the holder. A holder is *provably dead* only on this host, when its pid is gone, is a zombie
(exited, not yet reaped), or now runs a process started at another time: then the lock is taken over
with a note. A holder on another host is never presumed dead; its lock is removed by hand (the message
says which file).

Temporary files are named ``<name>.tmp-<host>-<pid>`` (:func:`lfbtool._io.atomic.temporary_path`);
:func:`temporary_is_dead` tells which ones a later run may delete.
"""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path
from typing import Any

from lfbtool._io.atomic import discard, os_error_text
from lfbtool.errors import LfbError

LOCK_NAME = ".lfbtool.lock"


def _stat_fields(pid: int) -> list[bytes] | None:
    """The fields of ``/proc/PID/stat`` after the command name, or None where it cannot be read.

    The name sits in parentheses and may itself hold spaces and parentheses: split after the last ")".
    Field 0 is the state, field 19 the start time (clock ticks since boot).
    """
    try:
        stat = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return None
    fields = stat.rpartition(b")")[2].split()
    return fields if len(fields) > 19 else None


def _start_time(pid: int) -> str:
    """The kernel's start time of ``pid`` (clock ticks since boot), or "" where /proc is absent."""
    fields = _stat_fields(pid)
    return fields[19].decode() if fields else ""


#: States of a process that has exited: a zombie (not yet reaped by its parent) or dead ("x" on old kernels).
_GONE_STATES = (b"Z", b"X", b"x")


def process_alive(pid: int, start: str = "") -> bool:
    """True when ``pid`` runs on this host (and, when ``start`` is known, is the same process).

    A zombie has exited: it only waits for its parent to read its status (a torchrun group killed
    with SIGKILL leaves some for a while), and ``kill(pid, 0)`` still succeeds on it; it counts as gone.
    """
    if pid <= 0:
        return False
    others = False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        others = True  # another user's process: it exists; /proc says whether it still runs
    fields = _stat_fields(pid)
    if fields is None:  # gone since the kill; or no /proc, or it hides others' processes: trust the kill
        return others or not Path("/proc/self/stat").exists()
    if fields[0] in _GONE_STATES:
        return False
    return not start or fields[19].decode() == start


def temporary_is_dead(path: Path) -> bool:
    """``x.tmp-<host>-<pid>`` written by a process of this host that is gone; anything else: False."""
    _, _, owner = path.name.rpartition(".tmp-")
    host, _, pid = owner.rpartition("-")
    if not pid.isdigit() or host != socket.gethostname():
        return False
    return not process_alive(int(pid))


def remove_dead_temporaries(paths: list[Path]) -> list[Path]:
    """Delete the temporaries (files or directories) among ``paths`` whose process is provably gone;
    return them."""
    removed = []
    for path in paths:
        if ".tmp-" in path.name and temporary_is_dead(path):
            discard(path)
            removed.append(path)
    return removed


#: The fields of a lock file and their JSON types (``started`` may be absent in locks of old versions).
_FIELDS: dict[str, type | tuple[type, ...]] = {"host": str, "pid": int, "start": str, "started": (int, float), "command": str}

#: pid: a positive 32-bit number (os.kill takes no more); started: seconds since 1970, before the year 5138.
_RANGES = {"pid": (1, 2**31), "started": (0, 1e11)}


def _describe(holder: dict[str, Any]) -> str:
    started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(float(holder.get("started", 0))))
    return f"{holder.get('command', 'lfbtool')} (pid {holder.get('pid')} on {holder.get('host')}, started {started})"


class RunLock:
    """``OUT/.lfbtool.lock`` (or ``name`` in ``directory``), held for the duration of a ``with`` block
    (or until :meth:`release`)."""

    def __init__(self, directory: Path, command: str, *, name: str = LOCK_NAME) -> None:
        self.path = Path(directory) / name
        self.command = command
        self.note: str | None = None
        self._held: dict[str, Any] | None = None

    def acquire(self) -> RunLock:
        me = {"host": socket.gethostname(), "pid": os.getpid(), "start": _start_time(os.getpid()),
              "started": time.time(), "command": self.command}
        for _ in range(3):
            if self._create(me):
                self._held = me
                return self
            holder = self._read()
            if holder is None:
                continue  # released between our create and read: try again
            if holder.get("host") != me["host"] or process_alive(int(holder.get("pid", 0)), holder.get("start", "")):
                where = "" if holder.get("host") == me["host"] else "; if that host is down, delete the lock file"
                raise LfbError(f"{self.path.parent}: in use by {_describe(holder)}; lock file {self.path}{where}")
            stale = self.path.with_name(f"{self.path.name}.stale-{me['host']}-{me['pid']}")
            try:
                os.replace(self.path, stale)
                moved = json.loads(stale.read_text())
            except FileNotFoundError:
                continue
            except (OSError, ValueError):
                moved = None
            if moved != holder:  # another command took it over in between: give its lock back
                try:
                    os.link(stale, self.path)
                except OSError:
                    pass
                stale.unlink(missing_ok=True)
                continue
            stale.unlink(missing_ok=True)
            self.note = f"took over the lock of {_describe(holder)}, which is no longer running"
        raise LfbError(f"{self.path}: could not take the lock (other commands keep taking it); try again")

    def _create(self, me: dict[str, Any]) -> bool:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            return False
        except OSError as error:
            raise LfbError(f"{self.path.parent}: output directory is not writable, cannot create the lock file "
                           f"({os_error_text(error)})") from error
        try:
            with os.fdopen(fd, "w") as handle:
                json.dump(me, handle)
                handle.flush()
                os.fsync(handle.fileno())
        except OSError as error:
            self.path.unlink(missing_ok=True)
            raise LfbError(f"{self.path}: cannot write the lock file ({os_error_text(error)})") from error
        return True

    def _read(self) -> dict[str, Any] | None:
        for _ in range(20):  # the creator writes its JSON right after O_EXCL: give it a moment
            try:
                holder = json.loads(self.path.read_text())
                if isinstance(holder, dict):
                    self._check_fields(holder)
                    return holder
            except FileNotFoundError:
                return None
            except (OSError, ValueError):
                pass
            time.sleep(0.05)
        return {"host": "?", "pid": 0, "command": "an unknown process (unreadable lock file)"}

    def _check_fields(self, holder: dict[str, Any]) -> None:
        """A lock lfbtool wrote: host and command text, pid a positive 32-bit number, start time text,
        started a number. Anything else was not written by lfbtool and is never guessed at: one line naming it."""
        for name, kinds in _FIELDS.items():
            value = holder.get(name)
            wrong = isinstance(value, bool) or not isinstance(value, kinds) or (
                name in _RANGES and not _RANGES[name][0] <= value < _RANGES[name][1])
            if name in holder and wrong:
                raise LfbError(f"{self.path}: not a lock file lfbtool wrote (field {name!r} is {value!r}); if no "
                               f"lfbtool command is using {self.path.parent}, delete the lock file")

    def release(self) -> None:
        """Remove the lock if it is still ours (a takeover by hand must not be undone)."""
        if self._held is None:
            return
        try:
            if json.loads(self.path.read_text()) == self._held:
                self.path.unlink()
        except (OSError, ValueError):
            pass
        self._held = None

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()
