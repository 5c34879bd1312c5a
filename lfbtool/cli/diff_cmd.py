"""``lfbtool diff A.h5 B.h5``: how two banks differ; exit 0 when identical, 1 when they differ, 2 on bad input."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from lfbtool.runtime.console import some, stdout

#: Keys named per category in the text output; the rest is counted ("+N more"); --json lists all.
SHOWN_KEYS = 5


def _some(keys: list[str]) -> str:
    return some(keys, SHOWN_KEYS)


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def diff_lines(diff) -> list[str]:  # noqa: ANN001 - a BankDiff, imported lazily
    """The text report: a verdict line, then one line per kind of difference found."""
    a, b = Path(diff.a).name, Path(diff.b).name
    if a == b:  # out_1/lfb_val.h5 and out_2/lfb_val.h5: the paths as given
        a, b = diff.a, diff.b
    if not diff.comparable:
        return [f"{diff.a} vs {diff.b}: differ: {diff.feature_dim[0]}-d features against {diff.feature_dim[1]}-d; "
                "nothing else compared"]
    verdict = "identical" if diff.identical else "differ"
    within = f" (features within --atol {diff.atol:g})" if diff.identical and diff.atol else ""
    lines = [f"{diff.a} vs {diff.b}: {verdict}{within}"]
    if diff.dtype[0] != diff.dtype[1]:
        lines.append(f"dtype: {diff.dtype[0]} in {a}, {diff.dtype[1]} in {b}")
    lines.append(f"keys: {diff.keys[0]} in {a}, {diff.keys[1]} in {b}")
    for name, keys in ((a, diff.only_in_a), (b, diff.only_in_b)):
        if keys:
            lines.append(f"only in {name}: {_plural(len(keys), 'key')}: {_some(keys)}")
    if diff.row_counts:
        shown = [f"{key} ({ra} vs {rb})" for key, ra, rb in diff.row_counts]
        lines.append(f"rows: {_plural(len(shown), 'shared key')} with another row count: {_some(shown)}")
    if diff.boxes_differ:
        lines.append(f"boxes: {_plural(len(diff.boxes_differ), 'key')} with other boxes "
                     f"(max |diff| {diff.box_max_abs:.6g}): {_some(diff.boxes_differ)}")
    if diff.scores_differ:
        lines.append(f"scores: {_plural(len(diff.scores_differ), 'key')} with other scores: "
                     f"{_some(diff.scores_differ)}")
    if diff.rows_compared:
        lines.append(f"features: {diff.rows_compared} rows compared, {diff.rows_equal} equal; |diff| max "
                     f"{diff.feature_max_abs:.6g}, mean {diff.feature_mean_abs:.6g}; cosine min "
                     f"{diff.cosine_min:.9g}, mean {diff.cosine_mean:.9g}")
    else:
        lines.append("features: no rows to compare (no shared key with the same row count)")
    return lines


def diff_command(
    a: Annotated[Path, typer.Argument(help="First bank file.")],
    b: Annotated[Path, typer.Argument(help="Second bank file.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print every figure and every differing key as JSON.")] = False,
    atol: Annotated[float, typer.Option("--atol", help="Features this close (absolute) count as equal; "
                                        "0 (default): bitwise.")] = 0.0,
) -> None:
    """Compare two banks: keys only in one, row counts, boxes, scores, and feature |diff| and cosine."""
    from lfbtool.bank.diff import diff_banks

    diff = diff_banks(a, b, atol=atol)
    if as_json:
        sys.stdout.write(json.dumps(diff.as_json(), indent=1) + "\n")
    else:
        for line in diff_lines(diff):
            stdout.print(line, markup=False)
    if not diff.identical:
        raise typer.Exit(1)
