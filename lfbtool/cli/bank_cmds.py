"""``lfbtool inspect``, ``lfbtool export`` and ``lfbtool import``: look into a bank, convert it both ways."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from lfbtool.choices import ExportFormat
from lfbtool.cli.options import BankArgument, Force
from lfbtool.runtime.console import stdout


def _size(n: int) -> str:
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.1f} {unit}" if unit != "B" else f"{n} B"
        value /= 1024
    return f"{n} B"


def _histogram(dist: dict[str, Any]) -> str:
    bars = ", ".join(f"{k}: {v}" for k, v in dist["histogram"].items())
    return f"min {dist['min']}, mean {dist['mean']}, max {dist['max']}  ({bars})"


def _settings_rows(info: dict[str, Any]) -> list[tuple[str, str]]:
    """The extraction settings that matter, from the bank's recorded config, in a few rows."""
    config = info["config"] if isinstance(info["config"], dict) else {}
    if config.get("source") == "mmaction2-pkl":
        return [("source", f"imported from MMAction2 pickle {config.get('imported_from', '?')}")]
    if "merged_from" in config:
        return [("source", f"merged from {len(config['merged_from'])} banks (see --config)")]
    if not config:
        return []
    checkpoint = config.get("checkpoint") or "-"
    sha = str(info["checkpoint_sha256"] or config.get("checkpoint_sha256") or "")
    pools = (f"RoI {config.get('roi_output_size')}x{config.get('roi_output_size')} after temporal "
             f"{config.get('roi_temporal_pool')}; head temporal {config.get('temporal_pool')}, "
             f"spatial {config.get('spatial_pool')}")
    return [
        ("backbone", str(config.get("backbone", "-"))),
        ("checkpoint", f"{checkpoint} (sha256 {sha[:12]})" if sha else checkpoint),
        ("clip", f"{config.get('clip_len')} x {config.get('frame_interval')} frames at {config.get('fps')} fps, "
                 f"short side {config.get('short_side')}"),
        ("pooling", pools),
        ("precision", f"compute {config.get('precision', 'fp32')}, stored {info['dtype']}"),
        ("keyframes", f"{config.get('keyframes')}{', whole-frame fallback' if config.get('whole_frame_fallback') else ''}"),
        ("boxes", boxes_text(config, info.get("score_range"))),
    ]


def boxes_text(config: dict[str, Any], score_range: list[float] | None) -> str:
    """Which score filter made the stored boxes, in words that agree with the stored scores: MMAction2's
    rule keeps a keyframe's best boxes when none reaches the threshold, so scores below it are said so."""
    detection = config.get("detection") if isinstance(config.get("detection"), dict) else None
    threshold = config.get("score_threshold")
    lowest = f"; stored scores {score_range[0]:g} .. {score_range[1]:g}" if score_range else ""
    if config.get("keyframes") == "annotated" and not config.get("proposals"):
        return "the annotated boxes (no scores)"
    words = []
    if detection is not None:
        words.append(f"detector kept score >= {detection.get('score_threshold')}, at most "
                     f"{detection.get('max_per_frame')} per frame")
    if config.get("score_threshold_from") == "detector":
        words.append("no further proposal filter (the detector's threshold applied)")
    elif isinstance(threshold, int | float) and score_range and score_range[0] < threshold:
        words.append(f"proposal filter score >= {threshold:g}, or a keyframe's best boxes when none reaches it")
    else:
        words.append(f"proposal filter score >= {threshold}")
    return "; ".join(words) + lowest


def inspect_command(
    bank: BankArgument,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON (everything, config included).")] = False,
    show_config: Annotated[bool, typer.Option("--config", help="Also print the whole extraction config.")] = False,
    video: Annotated[str | None, typer.Option("--video", help="Also list the keyframes of this video.")] = None,
) -> None:
    """Show a bank's format, sizes, boxes per keyframe and the settings it was built with; or one video's keys."""
    from lfbtool.bank.inspect import inspect_bank

    info = inspect_bank(bank, video=video)
    if as_json:
        sys.stdout.write(json.dumps(info, indent=1) + "\n")
        return
    table = Table("field", "value", title=str(bank), show_header=False)
    ts = info["timestamp_range"]
    rows = [
        ("format", f"{info['format']} v{info['format_version']}, mode {info['mode']}, {_size(info['file_size'])}"),
        ("contents", f"{info['videos']} videos, {info['keyframes']} keyframes, {info['boxes']} boxes "
                     f"({info['boxes_without_score']} without a score), {info['feature_dim']}-d {info['dtype']}"),
        ("boxes per keyframe", _histogram(info["boxes_per_keyframe"])),
        ("timestamps", f"{ts[0]} .. {ts[1]} s" if ts else "-"),
        *_settings_rows(info),
        ("fingerprint", f"{info['config_fingerprint']}, {info['created_by']}"),
    ]
    if show_config:
        rows.append(("config", json.dumps(info["config"], sort_keys=True)))
    for name, value in rows:
        table.add_row(name, value)
    stdout.print(table)
    if video is not None:
        detail = info["video"]
        keys = Table("key", "boxes", "min score", "max score", title=f"{video}: {detail['keyframes']} keyframes")
        for key in detail["keys"]:
            keys.add_row(
                key["key"],
                str(key["boxes"]),
                "-" if key["min_score"] is None else f"{key['min_score']:.4f}",
                "-" if key["max_score"] is None else f"{key['max_score']:.4f}",
            )
        stdout.print(keys)


def export_command(
    bank: BankArgument,
    format: Annotated[ExportFormat, typer.Option("--format", help="mmaction-pkl (one torch.save file) or npz-dir.")],
    output: Annotated[Path, typer.Option("-o", "--output", help="Output file (mmaction-pkl) or directory (npz-dir).")],
    force: Force = False,
) -> None:
    """Write the bank as MMAction2's LFB pickle, or as one .npz per video."""
    from lfbtool.bank.export import export_mmaction_pkl, export_npz_dir

    run = export_mmaction_pkl if format is ExportFormat.mmaction_pkl else export_npz_dir
    summary = run(bank, output, overwrite=force)
    stdout.print(
        f"wrote {summary.path}: {summary.videos} videos, {summary.keyframes} keyframes, {summary.rows} features",
        markup=False,
    )


def import_command(
    pkl: Annotated[Path, typer.Argument(help="MMAction2 bank (lfb_<mode>.pkl).")],
    output: Annotated[Path, typer.Option("-o", "--output", help="Bank file to write (lfb_<mode>.h5).")],
    mode: Annotated[str | None, typer.Option("--mode", help="Dataset mode; default from the name lfb_<mode>.pkl.")] = None,
    force: Force = False,
) -> None:
    """Convert an MMAction2 LFB pickle into a bank, loading it without running pickled code."""
    from lfbtool.bank.mmaction_import import import_mmaction_pkl

    summary = import_mmaction_pkl(pkl, output, mode=mode, overwrite=force)
    stdout.print(
        f"wrote {summary.path}: mode {summary.mode}, {summary.videos} videos, {summary.keyframes} keyframes, "
        f"{summary.rows} features ({summary.feature_dim}-d {summary.dtype}; boxes and scores unknown: NaN)",
        markup=False,
    )
