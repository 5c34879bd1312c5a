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
