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
    """Console-script entry point: run the app, turn every error into one line and an exit code.

    Typer runs with ``standalone_mode=False`` so that nothing ends the process behind this function:
    usage errors come back as click exceptions and are printed as one line here too, and SIGINT /
    SIGTERM (:mod:`lfbtool.runtime.stopping`) unwind as :class:`Stopped` through every cleanup first.
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
    from typer import Abort

    try:  # typer >= 0.22 carries its own copy of click
        from typer._click import exceptions as click_errors
    except ImportError:  # pragma: no cover - older typer
        from click import exceptions as click_errors  # type: ignore[no-redef]
    no_args_help = getattr(click_errors, "NoArgsIsHelpError", ())
    from lfbtool.errors import LfbError
    from lfbtool.runtime import is_node_leader
    from lfbtool.runtime.console import print_error

    try:
        code = app(standalone_mode=False)
    except no_args_help as error:  # bare `lfbtool` or a group: its help, as before
        error.show()
        return error.exit_code
    except click_errors.UsageError as error:
        where = error.ctx.command_path if error.ctx is not None else "lfbtool"
        print_error(f"{error.format_message()} (see {where} --help)")
        return error.exit_code
    except click_errors.ClickException as error:
        print_error(error.format_message())
        return error.exit_code
    except Abort as error:  # end of input at a prompt (older typer: a KeyboardInterrupt too)
        if isinstance(error.__cause__ or error.__context__, KeyboardInterrupt):
            raise KeyboardInterrupt from None
        print_error("aborted")
        return 1
    except LfbError as error:
        if debug:
            raise
        if is_node_leader() or not error.all_ranks:  # an error every rank shares: once per node's log
            print_error(str(error))
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
    return code if isinstance(code, int) and not isinstance(code, bool) else 0
