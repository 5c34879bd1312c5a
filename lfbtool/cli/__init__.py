"""The ``lfbtool`` command line: one Typer app; each command is a plain function registered here.

Commands parse options and call library functions. A :class:`~lfbtool.errors.LfbError` reaches the
terminal as one red line (no traceback unless ``--debug``) and sets the exit code; any other
exception is one line too, with a hint how to see its traceback.
"""

from __future__ import annotations

import os
import sys
from typing import Annotated

import typer

from lfbtool.cli.backbones_cmd import backbones_command
from lfbtool.cli.bank_cmds import export_command, import_command, inspect_command
from lfbtool.cli.detect_cmd import detect_command
from lfbtool.cli.diff_cmd import diff_command
from lfbtool.cli.extract_cmd import extract_command, merge_command
from lfbtool.cli.recognize_cmd import recognize_command
from lfbtool.cli.show_cmd import show_command
from lfbtool.cli.verify_cmd import verify_command

DEBUG_VARIABLE = "LFBTOOL_DEBUG"

app = typer.Typer(
    name="lfbtool",
    help="Build Long-Term Feature Banks and run a video recognizer's test path.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


@app.callback()
def _root(debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks for errors.")] = False) -> None:
    """Options before the command; ``--debug`` is read by :func:`main` from its own arguments."""


def debug_requested(argv: list[str]) -> bool:
    """``--debug`` before the command name, or ``LFBTOOL_DEBUG=1`` (read, never written: child
    processes do not inherit a flag they were not given)."""
    for arg in argv:
        if arg == "--debug":
            return True
        if not arg.startswith("-"):
            break
    return os.environ.get(DEBUG_VARIABLE) == "1"


app.command("extract")(extract_command)
app.command("merge")(merge_command)
app.command("verify")(verify_command)
app.command("inspect")(inspect_command)
app.command("export")(export_command)
app.command("import")(import_command)
app.command("diff")(diff_command)
app.command("recognize")(recognize_command)
app.command("detect")(detect_command)
app.command("backbones")(backbones_command)
app.command("show")(show_command)


def main() -> None:
    """Console-script entry point: run the app, turn every error into one line and an exit code."""
    from lfbtool.cli.options import error_text
    from lfbtool.errors import LfbError
    from lfbtool.runtime import is_node_leader
    from lfbtool.runtime.console import print_error

    debug = debug_requested(sys.argv[1:])
    try:
        app()
    except LfbError as error:
        if debug:
            raise
        if is_node_leader() or not error.all_ranks:  # an error every rank shares: once per node's log
            print_error(error_text(error))
        sys.exit(error.exit_code)
    except KeyboardInterrupt:
        print_error("interrupted; finished work is kept (rerun with --resume where the command has it)")
        sys.exit(130)
    except Exception as error:  # noqa: BLE001 - the last line of defence: one line, not a traceback
        if debug:
            raise
        first = (str(error).strip().splitlines() or [""])[0]
        print_error(f"internal error: {type(error).__name__}: {first} "
                    f"(rerun with --debug or {DEBUG_VARIABLE}=1 to see the traceback)")
        sys.exit(1)
