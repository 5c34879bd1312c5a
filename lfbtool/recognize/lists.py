"""The lists that name recognize's inputs, read once at the edge and torch-free: ``@list.txt`` (nested
lists expanded, cycles refused) and MMAction2's annotation files (``VideoDataset``'s ``path label`` and
``RawframeDataset``'s ``dir total_frames label`` lines, with ``data_prefix``).

Everything downstream takes the paths these functions return and never expands again, so an input
list means the same inputs at every stage (scoring, records, ``--resume``).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from lfbtool.choices import AnnFormat
from lfbtool.errors import LfbError

__all__ = ["InputList", "expand_inputs", "input_list", "read_annotations", "read_text_lines"]


def expand_inputs(inputs: Sequence[str | os.PathLike[str]]) -> list[Path]:
    """Paths as given, with ``@list.txt`` replaced by its lines, once, here at the edge.

    Blank lines and ``#`` comments are skipped, a UTF-8 byte order mark at the start is dropped, and a
    line ``@other.txt`` is expanded in place the same way (relative paths, in lists too, are relative to
    the current directory, as in the shell). A list that names itself, directly or through other lists,
    is refused in one line naming the cycle. Everything downstream takes the paths returned here.
    """
    paths: list[Path] = []
    for item in inputs:
        _expand(str(item), paths, ())
    if not paths:
        raise LfbError("no inputs: give video files, frame directories, @list.txt or --ann-file")
    return paths


def _expand(text: str, paths: list[Path], chain: tuple[tuple[Path, str], ...], where: str = "") -> None:
    """Append ``text`` (a path, or ``@list`` expanded recursively) to ``paths``; ``chain`` holds the lists
    being read (resolved path, as written), ``where`` the list line that named ``text``."""
    if not text.startswith("@"):
        paths.append(Path(text))
        return
    listing = Path(text[1:])
    resolved = listing.resolve()
    opened = [real for real, _ in chain]
    if resolved in opened:
        cycle = [shown for _, shown in chain[opened.index(resolved):]] + [str(listing)]
        raise LfbError(f"{where}@{listing} makes a cycle of input lists ({' -> '.join(cycle)}); "
                       "a list may not name itself, directly or through other lists")
    try:
        lines = read_text_lines(listing, "input list")
    except LfbError as error:  # a nested list that cannot be read: say which line named it
        raise LfbError(f"{where}{error}") from None
    for number, line in enumerate(lines, start=1):
        entry = line.strip()
        if entry and not entry.startswith("#"):
            _expand(entry, paths, (*chain, (resolved, str(listing))), f"{listing}: line {number}: ")


def read_text_lines(path: Path, what: str) -> list[str]:
    """A UTF-8 text file's lines, a byte order mark at its start dropped (Windows editors write one);
    an unreadable or non-UTF-8 file is one line naming it."""
    try:
        return path.read_text(encoding="utf-8-sig").splitlines()
    except UnicodeDecodeError as error:
        raise LfbError(f"{path}: {what} is not UTF-8 text (byte {error.start})") from None
    except OSError as error:
        raise LfbError(f"{path}: cannot read {what} ({error.strerror or error})") from None


@dataclass(frozen=True)
class InputList:
    """recognize's inputs, expanded once: what every later stage takes as it is.

    ``paths``: for an annotation list ``os.path.join(data_prefix, name)`` as MMAction2 joins them;
    ``total_frames``: the list's frame count per sample (rawframes; None: count the frames);
    ``labels``: the class of each sample, or None when there are none (MMAction2's ``-1``);
    ``source`` and ``lines``: the annotation list and each sample's 1-based line, for messages.
    """

    paths: list[Path]
    total_frames: list[int | None]
    labels: list[int] | None = None
    source: Path | None = None
    lines: list[int] | None = None

    def where(self, index: int) -> str:
        if self.source is None or self.lines is None:
            return str(self.paths[index])
        return f"{self.source}: line {self.lines[index]}"

    def check_labels(self, num_classes: int) -> None:
        """Every label must be a class of the model: one line naming the first that is not."""
        for index, label in enumerate(self.labels or []):
            if not 0 <= label < num_classes:
                raise LfbError(f"{self.where(index)}: label {label} is not a class of the model (0..{num_classes - 1})")


def input_list(inputs: Sequence[str | os.PathLike[str]] | InputList) -> InputList:
    """Paths and ``@list.txt`` expanded (:func:`expand_inputs`); an InputList as it is."""
    if isinstance(inputs, InputList):
        return inputs
    paths = expand_inputs(inputs)
    return InputList(paths, [None] * len(paths))


def _integer(text: str, what: str, where: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise LfbError(f"{where}: {what} {text!r} is not an integer") from None


def read_annotations(path: str | os.PathLike[str], format: AnnFormat | str,
                     data_prefix: str | os.PathLike[str] | None = None) -> InputList:
    """Read an annotation list as MMAction2 1.x's ``VideoDataset`` / ``RawframeDataset`` do.

    video: ``path [label]``, fields split on single spaces (``line.strip().split(' ')``); rawframes:
    ``frame_dir total_frames [label]``, split on any whitespace. A missing label (or ``-1``) means
    unlabelled; a list must be all labelled or all unlabelled. Multi-label lines, rawframes with
    offsets and blank fields are refused in one line naming the file and line; blank lines are skipped
    (MMAction2 would read them as a sample named ``data_prefix``).
    """
    source = Path(path)
    kind = AnnFormat.parse(format, "--ann-format")
    prefix = "" if data_prefix is None else str(data_prefix)
    paths: list[Path] = []
    totals: list[int | None] = []
    labels: list[int] = []
    numbers: list[int] = []
    for number, line in enumerate(read_text_lines(source, "annotation list"), start=1):
        if not line.strip():
            continue
        where = f"{source}: line {number}"
        if kind is AnnFormat.video:
            fields = line.strip().split(" ")
            if "" in fields:
                raise LfbError(f"{where}: fields must be separated by one space, as MMAction2's VideoDataset splits "
                               f"them (got {line.strip()!r})")
            if len(fields) > 2:
                raise LfbError(f"{where}: {len(fields) - 1} labels; multi-label lists are not supported "
                               "(expected 'path label')")
            total = None
        else:
            fields = line.split()
            if len(fields) < 2:
                raise LfbError(f"{where}: expected 'frame_dir total_frames label', got {line.strip()!r}")
            if len(fields) > 3:
                raise LfbError(f"{where}: {len(fields) - 2} fields after total_frames; multi-label lists and "
                               "offsets are not supported (expected 'frame_dir total_frames label')")
            total = _integer(fields[1], "total_frames", where)
            if total < 1:
                raise LfbError(f"{where}: total_frames must be >= 1, got {total}")
        label = _integer(fields[-1], "label", where) if len(fields) == (2 if total is None else 3) else -1
        if label < -1:
            raise LfbError(f"{where}: label {label} is negative")
        if labels and (label == -1) != (labels[0] == -1):
            raise LfbError(f"{where}: {'no label' if label == -1 else 'a label'}, but line {numbers[0]} has "
                           f"{'one' if label == -1 else 'none'}; label every line or none")
        paths.append(Path(os.path.join(prefix, fields[0])))
        totals.append(total)
        labels.append(label)
        numbers.append(number)
    if not paths:
        raise LfbError(f"{source}: no samples in the annotation list")
    return InputList(paths, totals, None if labels[0] == -1 else labels, source, numbers)
