"""Option types shared by several commands (huggingface_hub's CLI style): one declaration each."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from lfbtool.choices import Precision

Device = Annotated[
    str, typer.Option("--device", help="auto | cpu | cuda | cuda:N (auto: cuda:LOCAL_RANK when CUDA is present).")
]
Checkpoint = Annotated[
    Path | None,
    typer.Option("--checkpoint", help="Local checkpoint: MMAction2 / MMEngine / MMCV layout or a plain state_dict."),
]
Force = Annotated[bool, typer.Option("--force", help="Replace an existing output.")]
BankArgument = Annotated[Path, typer.Argument(help="Bank file (lfb_<mode>.h5).")]
OutputFile = Annotated[Path, typer.Option("--output", "-o", help="Output file.")]
PRECISION_HELP = ("fp32 (exact, MMAction2 parity) | bf16 | fp16: autocast + channels-last; fp16 needs CUDA, "
                  "bf16 pays on GPUs and CPUs with AMX/AVX512-bf16")
ComputePrecision = Annotated[Precision, typer.Option("--precision", help=PRECISION_HELP)]

#: Settings whose flag is not ``--`` + the name with dashes; every other setting ``x_y`` is ``--x-y``.
#: The one place that knows the flags: library errors name settings (:class:`~lfbtool.errors.SettingError`).
FLAGS: dict[str, str] = {}


def flag_of(setting: str) -> str:
    """The command-line flag of a library setting name (``clip_len`` -> ``--clip-len``)."""
    return FLAGS.get(setting, "--" + setting.replace("_", "-"))


def error_text(error: Exception) -> str:
    """An error's one line as the terminal shows it: a setting named by its flag."""
    from lfbtool.errors import SettingError

    if isinstance(error, SettingError):
        return error.render(flag_of)
    return str(error)
