"""How ``--help`` reads: an example under every command, no ``<bool>`` beside a flag, ``--version``.

Typer shows a value type beside every option; a flag takes no value, so its type column is left
empty (the command and group classes below set an empty metavar on boolean flags). Choices come
from the enums of :mod:`lfbtool.choices`, which Typer lists as ``<avg|max>``. Nothing here imports
torch: ``lfbtool --help`` and ``lfbtool --version`` start light.
"""

from __future__ import annotations

from typing import Any

import typer
from typer.core import TyperCommand, TyperGroup

#: The epilog of each command's ``--help``: commands as you would type them on your own files (the
#: paths are placeholders). Rich markup is on, so no square brackets here.
EXAMPLES: dict[str, str] = {
    "": "Examples:\n"
        "  make demo                         the bundled example, end to end\n"
        "  lfbtool extract --config my.toml  see lfbtool extract --help",
    "extract": "Examples:\n"
               "  lfbtool extract --mode train --out work_dirs/lfb \\\n"
               "    --annotations ava_train_v2.1.csv --proposals proposals_train.pkl \\\n"
               "    --frames-root rawframes --checkpoint slowonly_r50_ava.pth\n"
               "  lfbtool extract --videos-root videos --keyframes every-second \\\n"
               "    --detector-checkpoint coco.pth --checkpoint slowonly_r50_ava.pth -o bank\n"
               "  torchrun --nproc_per_node 8 -m lfbtool extract --config my.toml --resume",
    "merge": "Examples:\n"
             "  lfbtool merge work_dirs/lfb --mode train    (after extract --no-merge)\n"
             "  lfbtool merge lfb_train.h5 lfb_val.h5 -o lfb_trainval.h5",
    "verify": "Example:\n  lfbtool verify work_dirs/lfb/lfb_train.h5",
    "inspect": "Examples:\n  lfbtool inspect lfb_train.h5\n  lfbtool inspect lfb_train.h5 --video kitchen_01 --json",
    "export": "Examples:\n  lfbtool export lfb_train.h5 --format mmaction-pkl -o lfb_train.pkl\n"
              "  lfbtool export lfb_train.h5 --format npz-dir -o lfb_train_npz",
    "import": "Example:\n  lfbtool import lfb_train.pkl -o lfb_train.h5",
    "diff": "Example:\n  lfbtool diff out_1gpu/lfb_val.h5 out_torchrun/lfb_val.h5 --atol 1e-3",
    "recognize": "Examples:\n"
                 "  lfbtool recognize clip.mp4 frames_dir/ --backbone slowonly_r50 \\\n"
                 "    --checkpoint recognizer.pth --num-clips 10 --crops three \\\n"
                 "    --average-clips prob --labels labels.txt\n"
                 "  torchrun --nproc_per_node 8 -m lfbtool recognize @val_list.txt \\\n"
                 "    --backbone slowfast_r50 --checkpoint k400.pth --out results.jsonl",
    "detect": "Example (then extract at the seconds found, with the same frame settings):\n"
              "  lfbtool detect --videos-root videos --out persons.pkl \\\n"
              "    --detector-checkpoint coco.pth --clip-len 4 --frame-interval 16\n"
              "  lfbtool extract --videos-root videos --proposals persons.pkl \\\n"
              "    --keyframes proposals --fps auto --timestamp-start 0 \\\n"
              "    --checkpoint slowonly_r50_ava.pth --out bank",
    "backbones": "Examples:\n  lfbtool backbones\n  lfbtool backbones --json",
    "show": "Example:\n  lfbtool show lfb_train.h5 --videos-root videos --video kitchen_01 \\\n    -o bank.png",
}
#: Example lines fit an 80-column terminal (the help pads them by 1 on each side).
EXAMPLE_WIDTH = 76
# Typer dedents help text by the indentation common to all lines after the first: a leading newline
# makes "Examples:" such a line, at column 0, so the examples keep their indentation.
EXAMPLES = {name: "\n" + text for name, text in EXAMPLES.items()}


def _without_flag_types(params: list[Any]) -> list[Any]:
    """A boolean flag takes no value: an empty metavar leaves its type column empty."""
    for param in params:
        if getattr(param, "is_bool_flag", False) and param.metavar is None:
            param.metavar = ""
    return params


class Command(TyperCommand):
    """Every lfbtool command: its help shows no ``<bool>``."""

    def get_params(self, ctx: Any) -> list[Any]:
        return _without_flag_types(super().get_params(ctx))


class Group(TyperGroup):
    """The ``lfbtool`` group: its help shows no ``<bool>`` either."""

    def get_params(self, ctx: Any) -> list[Any]:
        return _without_flag_types(super().get_params(ctx))


def version_text() -> str:
    """``lfbtool 0.1.0``, from the installed package's metadata (no import of the package's modules)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return f"lfbtool {version('lfbtool')}"
    except PackageNotFoundError:
        return "lfbtool (version unknown: not installed; pip install -e .)"


def show_version(value: bool) -> None:
    """The eager ``--version`` callback: print and exit before any command runs."""
    if value:
        typer.echo(version_text())
        raise typer.Exit()
