"""Write a file so that its name only ever shows a complete file: temp file, fsync, rename.

Every output of lfbtool that a user or a later run may take as finished (attempt records, manifests,
exports, recognize results) goes through here. An OSError (disk full, permission), or the RuntimeError
torch and h5py raise for one, becomes one
:class:`~lfbtool.errors.RunError` naming the file, and the temporary file is removed.
"""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import socket
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from lfbtool.errors import LfbError, RunError


def temporary_path(path: Path, tag: str = "") -> Path:
    """``<name>.tmp-<host>-<pid>`` (``<name>.<tag>.tmp-<host>-<pid>`` with a tag): whose temporary it is
    (a later run drops only those of dead processes)."""
    return path.with_name(f"{path.name}{'.' + tag if tag else ''}.tmp-{socket.gethostname()}-{os.getpid()}")


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


def discard(path: Path) -> None:
    """Remove a temporary file or directory if it is there, whatever happens: cleanup after a failure
    must never replace that failure's error with its own (an unlink on a read-only filesystem fails
    with EROFS even when the file was never created)."""
    try:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
    except OSError:
        pass


def make_directory(path: Path) -> Path:
    """``mkdir -p path``; failing (read-only filesystem, permission), one RunError naming it."""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise RunError(f"{path}: cannot create the directory ({os_error_text(error)})") from error
    return path


def already_exists(path: Path) -> LfbError:
    """The one refusal of an existing output: checked before the work starts, and again, atomically,
    when the result is published (another command may have written it meanwhile)."""
    return LfbError(f"{path}: already exists; pass --force to replace it")


def check_output_path(path: str | os.PathLike[str], *, directory: bool = False, overwrite: bool = True) -> Path:
    """Refuse, in one line and before any work, an output path that cannot be what the command writes:
    a symbolic link to nothing (the write would replace the link, or fail deep inside as "in use" or
    "already exists"), a directory where a file goes, a file where a directory goes; and, without
    ``overwrite``, an existing file (:func:`already_exists`)."""
    path = Path(path)
    if path.is_symlink() and not path.exists():
        fix = "create that directory" if directory else "remove the link"
        raise LfbError(f"{path}: is a symbolic link to {os.readlink(path)}, which does not exist; {fix} or give "
                       "another path")
    if directory:
        if os.path.lexists(path) and not path.is_dir():
            raise LfbError(f"{path}: exists and is not a directory")
        return path
    if path.is_dir():
        raise LfbError(f"{path}: is a directory; give the output a file name")
    if not overwrite and os.path.lexists(path):
        raise already_exists(path)
    return path


#: errnos of filesystems that have no hard links (FAT, some FUSE and SMB mounts).
_NO_LINKS = {errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.ENOSYS, errno.EMLINK}


def publish(tmp: Path, path: Path, *, replace: bool = True) -> Path:
    """fsync the finished ``tmp`` and give it the name ``path``: the one step that makes a file finished.

    ``replace=False`` makes "``path`` does not exist yet" and the publish one atomic step: a hard link
    fails with EEXIST when ``path`` exists (two commands writing one output without ``--force``: the
    second gets :func:`already_exists`, the first's file stays). Where the filesystem has no hard links,
    the check and the rename are two steps.
    """
    with open(tmp, "rb+") as handle:
        os.fsync(handle.fileno())
    if replace:
        os.replace(tmp, path)
        return path
    try:
        os.link(tmp, path)
    except FileExistsError:
        raise already_exists(path) from None
    except OSError as error:
        if error.errno not in _NO_LINKS:
            raise
        if os.path.lexists(path):
            raise already_exists(path) from None
        os.rename(tmp, path)
        return path
    os.unlink(tmp)
    return path


def publish_directory(tmp: Path, path: Path, *, replace: bool) -> None:
    """Rename the finished directory ``tmp`` to ``path``, fsyncing the parent.

    Renaming onto an empty directory replaces it; onto a non-empty one it fails: without ``replace``
    that failure means another command published ``path`` meanwhile (one line, its export stays).
    With ``replace`` the old directory is first renamed away (``path.old.tmp-<host>-<pid>``), the new
    one renamed in, the old one removed: ``path`` never holds a mix of the two.
    """
    old = temporary_path(path, "old")
    if replace and path.is_dir() and any(path.iterdir()):
        os.rename(path, old)
    try:
        os.rename(tmp, path)
    except OSError as error:
        if error.errno in (errno.ENOTEMPTY, errno.EEXIST):
            raise already_exists(path) from None
        raise
    finally:
        if os.path.lexists(old):
            if os.path.lexists(path):
                discard(old)
            else:
                os.rename(old, path)  # the new one did not go in: the earlier one stays
    try:  # the renames on disk too; best effort: some filesystems cannot fsync a directory
        descriptor = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)
    except OSError:
        pass


@contextmanager
def atomic_output(path: str | os.PathLike[str], *, replace: bool = True) -> Iterator[Path]:
    """A temporary path beside ``path`` for writers that take a path (h5py): published as ``path`` when
    the block ends, removed when it raises; an OSError (or torch's / h5py's RuntimeError for one)
    becomes one RunError naming ``path``. ``replace=False``: see :func:`publish`."""
    path = Path(path)
    tmp = temporary_path(path)
    try:
        yield tmp
        publish(tmp, path, replace=replace)
    except (OSError, RuntimeError) as error:  # torch.save and h5py report a failed write as RuntimeError
        raise RunError(f"{path}: cannot write ({io_error_text(error)})") from error
    finally:
        discard(tmp)


def atomic_write(path: str | os.PathLike[str], write: Callable[[IO[Any]], object], *, binary: bool = True,
                 replace: bool = True) -> Path:
    """Call ``write(handle)`` on a temporary file beside ``path``, then publish it as ``path``."""
    path = Path(path)
    with atomic_output(path, replace=replace) as tmp:
        with open(tmp, "wb" if binary else "w", encoding=None if binary else "utf-8") as handle:
            write(handle)
    return path


def write_json_atomic(path: str | os.PathLike[str], data: Any) -> Path:
    """``data`` as indented, key-sorted JSON, atomically."""
    text = json.dumps(data, indent=1, sort_keys=True)
    return atomic_write(path, lambda handle: handle.write(text), binary=False)
