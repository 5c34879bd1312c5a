"""Terminal output: the two consoles, and errors as one red line on stderr (who prints: lfbtool.runtime)."""

from __future__ import annotations

import sys

from rich.console import Console

stdout = Console(highlight=False, soft_wrap=True)
stderr = Console(stderr=True, highlight=False, soft_wrap=True)


def print_error(message: str) -> None:
    """One line, red when stderr is a terminal, prefixed so it is easy to grep."""
    line = f"error: {message}".replace("\n", " ")
    if sys.stderr.isatty():
        stderr.print(line, style="bold red", markup=False)
    else:
        sys.stderr.write(line + "\n")
        sys.stderr.flush()
