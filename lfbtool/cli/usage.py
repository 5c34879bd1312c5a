"""Command-line mistakes (a misspelled choice, an unknown option or command, a missing value) as the
one ``error:`` line every other refusal is, with "did you mean" where a close name exists.

Click would print the usage, a hint and a boxed message; :func:`usage_error_line` makes that one line
that names the option, the value given, the choices and the closest one. The value is read back from
the command line as given (Click's message does not carry it in a stable form).
"""

from __future__ import annotations

from enum import Enum
from typing import Any

import typer

from lfbtool.choices import did_you_mean

#: Click's base exception class, whichever Click Typer runs on (its own vendored copy or the package).
CLICK_EXCEPTION: type[Exception] = next(c for c in typer.BadParameter.__mro__ if c.__name__ == "ClickException")


def _choices(param: Any) -> list[str]:
    """The values a parameter accepts, when it is a choice (an Enum in Typer, or a click.Choice)."""
    descriptor = getattr(param, "type_descriptor", None)
    found = getattr(descriptor, "choices", None) if descriptor is not None else None
    if not found:
        found = getattr(getattr(param, "type", None), "choices", None)
    return [str(c.value) if isinstance(c, Enum) else str(c) for c in found or ()]


def _given_value(param: Any, argv: list[str]) -> str | None:
    """The last value given to ``param`` on the command line (``--opt VALUE`` or ``--opt=VALUE``)."""
    names = list(getattr(param, "opts", ())) + list(getattr(param, "secondary_opts", ()))
    value = None
    for i, arg in enumerate(argv):
        if arg == "--":
            break
        for name in names:
            if arg == name and i + 1 < len(argv):
                value = argv[i + 1]
            elif name.startswith("--") and arg.startswith(name + "="):
                value = arg[len(name) + 1:]
    return value


def _option_name(param: Any) -> str:
    opts = [o for o in getattr(param, "opts", ()) if o.startswith("--")] or list(getattr(param, "opts", ()))
    return opts[0] if opts else str(getattr(param, "name", "value"))


def usage_error_line(error: Exception, argv: list[str]) -> str:
    """The one line for a Click usage error; a bad choice reads ``--precision: 'bf61' is not one of
    fp32, bf16, fp16, auto; did you mean bf16?``."""
    param = getattr(error, "param", None)
    choices = _choices(param) if param is not None else []
    given = _given_value(param, argv) if choices else None
    possibilities = sorted(getattr(error, "possibilities", None) or ())
    if choices and given is not None and given not in choices:
        line = f"{_option_name(param)}: {given!r} is not one of {', '.join(choices)}{did_you_mean(given, choices)}"
    elif possibilities and getattr(error, "option_name", None):  # an unknown option, Click's close ones
        line = f"no such option {error.option_name}; did you mean {' or '.join(possibilities)}?"
    else:
        format_message = getattr(error, "format_message", None)
        line = (format_message() if callable(format_message) else str(error)).strip().replace("\n", " ")
    ctx = getattr(error, "ctx", None)
    command = getattr(ctx, "command_path", None) or "lfbtool"
    return f"{line} (see {command} --help)"
