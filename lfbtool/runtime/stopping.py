"""Ctrl-C (SIGINT) and SIGTERM end a command the same way: cleanup, one line, exit 130 / 143.

Both signals raise :class:`Stopped` in the main thread. It derives from ``BaseException`` and not from
``KeyboardInterrupt``: ``except Exception`` never swallows it, every ``finally`` and context manager
on the way out runs (temporaries discarded, the run's lock released, the open segment aborted), and
Typer, which turns a ``KeyboardInterrupt`` into a silent exit 130, lets it pass to the CLI's entry
point, which prints the one line.

A second signal while the first is unwinding ends the process at once (``os._exit``) with the same
one line: two Ctrl-C still stop a cleanup that hangs, leaving at most what a ``kill -9`` leaves (a
temporary with a dead pid, a lock a later command takes over). A signal that was ignored when the
process started (``SIG_IGN``: a background job of a non-interactive shell, ``nohup``) stays ignored.
Child processes forked from this one (DataLoader workers) do not raise :class:`Stopped`: a worker
ends as PyTorch expects (``KeyboardInterrupt`` on SIGINT, the default action on SIGTERM) and the
main process does the cleanup.

Imports only the standard library: the entry point installs the handlers before anything else loads.
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

__all__ = ["Stopped", "stop_on_signals", "stopped_message"]

_NAMES = {signal.SIGINT: ("SIGINT", "interrupted"), signal.SIGTERM: ("SIGTERM", "terminated")}

#: Commands that keep their finished parts and continue with ``--resume``.
RESUMABLE = ("extract", "detect", "recognize")


class Stopped(BaseException):
    """SIGINT or SIGTERM arrived; ``exit_code`` is the shell's ``128 + signal number``."""

    def __init__(self, signum: int) -> None:
        super().__init__(_NAMES.get(signum, (f"signal {signum}", "stopped"))[1])
        self.signum = signum

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


def command_name(argv: list[str]) -> str:
    """``lfbtool extract`` from the arguments (the first one that is not an option), or ``lfbtool``."""
    for arg in argv:
        if not arg.startswith("-"):
            return f"lfbtool {arg}"
    return "lfbtool"


def stopped_message(signum: int, argv: list[str]) -> str:
    """``lfbtool extract interrupted (SIGINT); ...``: what stopped which command, and what is left."""
    name, verb = _NAMES.get(signum, (f"signal {signum}", "stopped"))
    command = command_name(argv)
    if command.split()[-1] in RESUMABLE:
        left = "finished parts are kept, temporaries removed; rerun with --resume to continue"
    else:
        left = "temporaries removed, no output half-written"
    return f"{command} {verb} ({name}); {left}"


_state: dict[str, object] = {"owner": None, "stopping": None}


def _handle(signum: int, frame: FrameType | None) -> None:
    if os.getpid() != _state["owner"]:  # a forked child (DataLoader worker): end as PyTorch expects
        if signum == signal.SIGINT:
            raise KeyboardInterrupt
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)
        return
    if _state["stopping"] is not None:  # a second signal while the first unwinds: stop now
        try:
            sys.stderr.write(f"error: {stopped_message(signum, sys.argv[1:])}\n")
            sys.stderr.flush()
        finally:
            os._exit(128 + signum)
    _state["stopping"] = signum
    raise Stopped(signum)


@contextmanager
def stop_on_signals() -> Iterator[None]:
    """SIGINT and SIGTERM raise :class:`Stopped` inside the block (main thread only; nested blocks
    keep the outer one's handlers); the earlier handlers come back when it ends."""
    import threading

    if threading.current_thread() is not threading.main_thread() or _state["owner"] == os.getpid():
        yield
        return
    earlier: dict[int, object] = {}
    for signum in _NAMES:
        current = signal.getsignal(signum)
        if current is signal.SIG_IGN:
            continue
        earlier[signum] = current
        signal.signal(signum, _handle)
    _state["owner"], _state["stopping"] = os.getpid(), None
    try:
        yield
    finally:
        for signum, handler in earlier.items():
            signal.signal(signum, handler)  # type: ignore[arg-type]
        _state["owner"], _state["stopping"] = None, None
