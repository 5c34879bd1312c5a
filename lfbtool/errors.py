"""The one error type users see: a message naming the file and the row or key, and an exit code."""

from __future__ import annotations

from collections.abc import Callable


class LfbError(Exception):
    """An error the user can fix (bad input, missing file, refused load).

    The CLI prints ``str(error)`` as one red line and exits with ``exit_code``:
    2 for usage and input errors, 1 for runtime failures. ``all_ranks`` marks an error every rank of
    a torchrun job raises identically (it was shared through a collective): only rank 0 prints it.
    """

    exit_code: int = 2

    def __init__(self, message: str, *, exit_code: int | None = None, all_ranks: bool = False) -> None:
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code
        self.all_ranks = all_ranks


class RunError(LfbError):
    """A failure while running (a rank vanished, the disk filled up): exit code 1."""

    exit_code = 1


class SettingError(LfbError):
    """A setting's value is refused: ``setting`` is the library's name (``clip_len``), ``message`` the
    rest of the sentence (``must be a positive integer, got 0``). A message that names settings
    elsewhere in the sentence holds ``{0}`` (``setting``) and ``{1}``... (``also``) placeholders.

    The library never names a command-line flag; the CLI maps settings to its flags in one place
    (:func:`lfbtool.cli.options.error_text`), so the same error reads ``clip_len must ...`` from Python
    and ``--clip-len must ...`` in a terminal.
    """

    def __init__(self, setting: str, message: str, *, also: tuple[str, ...] = (), exit_code: int | None = None,
                 all_ranks: bool = False) -> None:
        self.setting = setting
        self.message = message
        self.also = also
        super().__init__(self.render(str), exit_code=exit_code, all_ranks=all_ranks)

    def render(self, name_of: Callable[[str], str]) -> str:
        """The message with every setting named by ``name_of`` (the CLI passes its flag lookup)."""
        names = [name_of(self.setting), *map(name_of, self.also)]
        text = self.message
        for number, name in enumerate(names):  # literal placeholders: the message may hold user text with braces
            text = text.replace(f"{{{number}}}", name)
        return text if "{0}" in self.message else f"{names[0]} {text}"
