"""Terminal output: the two consoles, and errors as one red line on stderr (who prints: lfbtool.runtime)."""

from __future__ import annotations

import sys

from rich.console import Console

stdout = Console(highlight=False, soft_wrap=True)
stderr = Console(stderr=True, highlight=False, soft_wrap=True)


def _print_line(prefix: str, message: str, style: str) -> None:
    line = f"{prefix}: {message}".replace("\n", " ")
    if sys.stderr.isatty():
        stderr.print(line, style=style, markup=False)
    else:
        sys.stderr.write(line + "\n")
        sys.stderr.flush()


def print_error(message: str) -> None:
    """One line, red when stderr is a terminal, prefixed so it is easy to grep."""
    _print_line("error", message, "bold red")


def print_warning(message: str) -> None:
    """One ``warning: ...`` line on stderr, yellow at a terminal: the run goes on."""
    _print_line("warning", message, "yellow")


def progress_bar(label: str, enabled: bool):
    """``label`` done / total, items/s, ETA on stderr; ``enabled`` only on rank 0 at a terminal."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    return Progress(
        TextColumn(label), BarColumn(), MofNCompleteColumn(), TextColumn("[progress.data.speed]{task.fields[rate]}"),
        TimeRemainingColumn(), console=stderr, disable=not enabled, transient=False,
    )


def some(items: list[str], shown: int = 5) -> str:
    """The first ``shown`` items, then ``+N more``: a list in one line that never runs on for pages."""
    head = ", ".join(items[:shown])
    return head + (f", +{len(items) - shown} more" if len(items) > shown else "")
