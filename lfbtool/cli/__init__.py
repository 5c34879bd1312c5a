"""The ``lfbtool`` command line: one Typer app; each command module registers its commands on it.

Commands parse options and call library functions. A :class:`~lfbtool.errors.LfbError` reaches the
terminal as one red line (no traceback unless ``--debug``) and sets the exit code.
"""

from __future__ import annotations

import os
import sys

import typer

app = typer.Typer(
    name="lfbtool",
    help="Build Long-Term Feature Banks and run a video recognizer's test path.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


@app.callback()
def _root(
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks for errors."),
) -> None:
    if debug:
        os.environ["LFBTOOL_DEBUG"] = "1"


def main() -> None:
    """Console-script entry point: run the app, turn project errors into one line and an exit code."""
    from lfbtool.console import is_node_leader, print_error
    from lfbtool.errors import LfbError

    try:
        app()
    except LfbError as error:
        if os.environ.get("LFBTOOL_DEBUG") == "1":
            raise
        if is_node_leader() or not error.all_ranks:  # an error every rank shares: once per node's log
            print_error(str(error))
        sys.exit(error.exit_code)


# Command modules register themselves on `app` when imported (ruff: E402/F401/I001 off for this file).
from lfbtool.cli import backbones_cmd, bank_cmds, extract_cmd
from lfbtool.cli import verify_cmd
from lfbtool.cli.recognize_cmd import recognize_command

app.command("recognize")(recognize_command)
