"""Write a file so that its name only ever shows a complete file: temp file, fsync, rename.

Every output of lfbtool that a user or a later run may take as finished (attempt records, manifests,
exports, recognize results) goes through here. An OSError (disk full, permission), or the RuntimeError
torch and h5py raise for one, becomes one
:class:`~lfbtool.errors.RunError` naming the file, and the temporary file is removed.
"""

from __future__ import annotations

import json
import os
import re
import socket
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from lfbtool.errors import RunError


def temporary_path(path: Path) -> Path:
    """``<name>.tmp-<host>-<pid>``: whose temporary it is (a later run drops only those of dead processes)."""
    return path.with_name(f"{path.name}.tmp-{socket.gethostname()}-{os.getpid()}")


def os_error_text(error: OSError) -> str:
    """``no space left on device`` rather than ``[Errno 28] No space left on device: '/x'``."""
    return (error.strerror or str(error) or type(error).__name__).lower()


def io_error_text(error: BaseException) -> str:
    """:func:`os_error_text`, also for the errors h5py and torch raise on a failed write: h5py's text
    carries the OS message (``error message = 'No space left on device'``), torch's RuntimeError has
    the OSError as its context."""
    cause: BaseException | None = error
    while cause is not None:
        found = re.search(r"error message = '([^']+)'", str(cause))
        if found:
            return found.group(1).lower()
        if isinstance(cause, OSError) and cause.errno:
            return os.strerror(cause.errno).lower()
        if isinstance(cause, OSError) and cause.strerror:
            return os_error_text(cause)
        cause = cause.__cause__ or cause.__context__
    return (str(error).splitlines() or [type(error).__name__])[0]


def publish(tmp: Path, path: Path) -> Path:
    """fsync the finished ``tmp`` and rename it to ``path``: the one step that gives a file its name."""
    with open(tmp, "rb+") as handle:
        os.fsync(handle.fileno())
    os.replace(tmp, path)
    return path


@contextmanager
def atomic_output(path: str | os.PathLike[str]) -> Iterator[Path]:
    """A temporary path beside ``path`` for writers that take a path (h5py): published as ``path`` when
    the block ends, removed when it raises; an OSError (or torch's / h5py's RuntimeError for one)
    becomes one RunError naming ``path``."""
    path = Path(path)
    tmp = temporary_path(path)
    try:
        yield tmp
        publish(tmp, path)
    except (OSError, RuntimeError) as error:  # torch.save and h5py report a failed write as RuntimeError
        raise RunError(f"{path}: cannot write ({io_error_text(error)})") from error
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write(path: str | os.PathLike[str], write: Callable[[IO[Any]], object], *, binary: bool = True) -> Path:
    """Call ``write(handle)`` on a temporary file beside ``path``, then publish it as ``path``."""
    path = Path(path)
    with atomic_output(path) as tmp:
        with open(tmp, "wb" if binary else "w", encoding=None if binary else "utf-8") as handle:
            write(handle)
    return path


def write_json_atomic(path: str | os.PathLike[str], data: Any) -> Path:
    """``data`` as indented, key-sorted JSON, atomically."""
    text = json.dumps(data, indent=1, sort_keys=True)
    return atomic_write(path, lambda handle: handle.write(text), binary=False)
