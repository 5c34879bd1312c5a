"""The ``lfbtool`` command line: one Typer app; each command is a plain function registered here.

Commands parse options and call library functions. A :class:`~lfbtool.errors.LfbError` reaches the
terminal as one red line (no traceback unless ``--debug``) and sets the exit code; any other
exception is one line too, with a hint how to see its traceback.
"""

from __future__ import annotations

import os
import signal
import sys
from typing import Annotated, NoReturn

import typer

from lfbtool.cli.backbones_cmd import backbones_command
from lfbtool.cli.bank_cmds import export_command, import_command, inspect_command
from lfbtool.cli.detect_cmd import detect_command
from lfbtool.cli.diff_cmd import diff_command
from lfbtool.cli.extract_cmd import extract_command, merge_command
from lfbtool.cli.help import EXAMPLES, Command, Group, show_version
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
    cls=Group,
    epilog=EXAMPLES[""],
)


@app.callback()
def _root(
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks for errors.")] = False,
    version: Annotated[bool, typer.Option("--version", is_eager=True, callback=show_version,
                                          help="Print lfbtool's version and exit.")] = False,
) -> None:
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


for _name, _command in (
    ("extract", extract_command), ("merge", merge_command), ("verify", verify_command),
    ("inspect", inspect_command), ("export", export_command), ("import", import_command), ("diff", diff_command),
    ("recognize", recognize_command), ("detect", detect_command), ("backbones", backbones_command),
    ("show", show_command),
):
    app.command(_name, cls=Command, epilog=EXAMPLES[_name])(_command)


def main() -> None:
    """Console-script entry point: run the app, turn every error into one line and an exit code.

    SIGINT and SIGTERM (:mod:`lfbtool.runtime.stopping`) unwind as :class:`Stopped` through every
    cleanup first, then end here as one line and exit 130 / 143.
    """
    from lfbtool.runtime.stopping import Stopped, stop_on_signals

    with stop_on_signals():
        try:
            code = _run_app(debug_requested(sys.argv[1:]))
        except Stopped as stop:
            _exit_stopped(stop.signum)
        except KeyboardInterrupt:  # raised by hand, or before the handlers were in place
            _exit_stopped(signal.SIGINT)
    sys.exit(code)  # 0 too, as Typer's standalone mode did: callers may rely on SystemExit


def _exit_stopped(signum: int) -> NoReturn:
    from lfbtool.runtime import is_node_leader
    from lfbtool.runtime.console import print_error
    from lfbtool.runtime.stopping import stopped_message

    if is_node_leader():  # under torchrun every rank gets the signal: one line per node
        print_error(stopped_message(signum, sys.argv[1:]))
    sys.exit(128 + signum)


def _run_app(debug: bool) -> int:
    """The app's exit code (0: done); an error is printed as one line and becomes its code."""
    from lfbtool.cli.options import error_text
    from lfbtool.cli.usage import CLICK_EXCEPTION, usage_error_line
    from lfbtool.errors import LfbError
    from lfbtool.runtime import is_node_leader
    from lfbtool.runtime.console import print_error

    try:
        code = app(standalone_mode=False)  # Click's own error printing off: one line, as every refusal
    except CLICK_EXCEPTION as error:
        if type(error).__name__ != "NoArgsIsHelpError":  # that one has printed the help already
            print_error(usage_error_line(error, sys.argv[1:]))
        return getattr(error, "exit_code", 2)
    except typer.Abort as error:  # end of input at a prompt (older typer: a KeyboardInterrupt too)
        if isinstance(error.__cause__ or error.__context__, KeyboardInterrupt):
            raise KeyboardInterrupt from None
        print_error("aborted")
        return 1
    except LfbError as error:
        if debug:
            raise
        if is_node_leader() or not error.all_ranks:  # an error every rank shares: once per node's log
            print_error(error_text(error))
        return error.exit_code
    except Exception as error:  # noqa: BLE001 - the last line of defence: one line, not a traceback
        if debug:
            raise
        first = (str(error).strip().splitlines() or [""])[0]
        print_error(f"internal error: {type(error).__name__}: {first} "
                    f"(rerun with --debug or {DEBUG_VARIABLE}=1 to see the traceback)")
        return 1
    if code == 130:  # typer turns a KeyboardInterrupt into Exit(130), returned here
        raise KeyboardInterrupt
    return code if isinstance(code, int) and not isinstance(code, bool) else 0  # an Exit's code; a command's None: 0
