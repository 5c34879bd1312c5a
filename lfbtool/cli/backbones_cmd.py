"""``lfbtool backbones``: the registered backbones and what their specs say (specs only, no torch).

Plain lines, not a table that wraps: one row of facts per backbone and its description under it,
readable at 80 columns and in a pipe, then the whole names of the MMAction2 configs whose checkpoints
load (never wrapped or cut); ``--json`` gives every fact of every spec to scripts.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import textwrap
from typing import Annotated

import typer

from lfbtool.models.registry import list_backbones
from lfbtool.models.specs import BackboneSpec

_HEADER = ("backbone", "channels", "stride", "AVA clip", "test views", "weights")
_GAP = "  "
_WIDTH = 80


def _row(spec: BackboneSpec) -> tuple[str, ...]:
    test = spec.test_clip
    channels = "+".join(map(str, spec.pathway_channels)) if spec.pathway_channels else str(spec.channels)
    ava_clip = "-" if spec.no_bank else f"{spec.extract_clip.clip_len}x{spec.extract_clip.frame_interval}"
    return (
        spec.name, channels, str(spec.stride), ava_clip,
        f"{test.num_clips} x {test.clip_len}x{test.frame_interval}, {test.short_side}->{test.crop_size}",
        "torchvision" if spec.torchvision_model else "MMAction2",
    )


def _notes(spec: BackboneSpec) -> list[str]:
    """What the row cannot show: a fixed clip length, test crops and averaging other than the usual
    center / score, and why a trunk builds no bank."""
    test, notes = spec.test_clip, []
    if spec.clip_frames is not None:
        notes.append(f"clips of exactly {spec.clip_frames} frames")
    if test.crops != "center" or test.average_clips != "score":
        notes.append(f"test: {test.crops} crops, average {test.average_clips}")
    if spec.no_bank:
        notes.append(f"no bank: {spec.no_bank}")
    return ["; ".join(notes)] if notes else []


def backbones_lines(specs: list[BackboneSpec]) -> list[str]:
    """The listing as lines: columns padded to their widest cell, descriptions wrapped at 80."""
    rows = [_HEADER, *(_row(spec) for spec in specs)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(_HEADER))]

    def line(row: tuple[str, ...]) -> str:
        return _GAP.join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()

    lines = [line(_HEADER)]
    for spec, row in zip(specs, rows[1:], strict=True):
        lines.append(line(row))
        for text in (spec.description, *_notes(spec)):
            lines.extend(textwrap.wrap(text, _WIDTH, initial_indent="    ", subsequent_indent="    "))
        if spec.mmaction_configs:  # whole names, one a line, never wrapped: they are searched for and copied
            lines.append("    checkpoints of the MMAction2 configs (<config>_<date>-<hash>.pth):")
            for config in spec.mmaction_configs:
                name, _, note = config.partition(" ")  # a note such as "(0.x)" fits beside it or goes under it
                text = f"      {name} {note}".rstrip()
                lines.extend([text] if len(text) <= _WIDTH or not note else [f"      {name}", f"        {note}"])
    lines.append("")
    lines.append("AVA clip: frames x interval (-: no bank). test views: clips x (frames x interval), short side -> crop. "
                 "weights: --weights NAME (torchvision) or --checkpoint FILE (an MMAction2 checkpoint of a config "
                 "listed, docs/models.md).")
    return [*lines[:-1], *textwrap.wrap(lines[-1], _WIDTH)]


def backbones_command(
    as_json: Annotated[bool, typer.Option("--json", help="Print every spec's facts as a JSON list.")] = False,
) -> None:
    """List the backbones: channels, stride, default AVA and test clips, where their weights come from."""
    specs = list_backbones()
    if as_json:
        sys.stdout.write(json.dumps([dataclasses.asdict(spec) for spec in specs], indent=1) + "\n")
        return
    sys.stdout.write("\n".join(backbones_lines(specs)) + "\n")
