"""``lfbtool extract`` and ``lfbtool merge``: parse options, call the library, print the summary (rank 0)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import typer

from lfbtool.cli import app
from lfbtool.console import is_main_process, stdout

_INPUTS = "Inputs"
_MODEL = "Model"
_RUN = "Run"


@app.command("extract")
def extract_command(
    out: Path | None = typer.Option(None, "--out", "-o", help="Output directory (bank: OUT/lfb_{mode}.h5)."),
    mode: str | None = typer.Option(None, help="Dataset mode, names the bank file (default: train)."),
    config: Path | None = typer.Option(None, "--config", help="TOML file setting any option; options given here win."),
    keyframes: str | None = typer.Option(None, help="annotated (MMAction2) | proposals (original LFB).", rich_help_panel=_INPUTS),
    annotations: Path | None = typer.Option(None, help="AVA annotation CSV.", rich_help_panel=_INPUTS),
    excluded: Path | None = typer.Option(None, help="Excluded-timestamps CSV.", rich_help_panel=_INPUTS),
    proposals: Path | None = typer.Option(None, help="Person proposals (.pkl or .csv).", rich_help_panel=_INPUTS),
    score_threshold: float | None = typer.Option(None, help="Keep proposals scoring at least this (default: 0.9).", rich_help_panel=_INPUTS),
    whole_frame_fallback: bool | None = typer.Option(None, "--whole-frame-fallback/--no-whole-frame-fallback", help="Keyframes without proposals get box [0,0,1,1] (MMAction2) instead of being skipped.", rich_help_panel=_INPUTS),
    frames_root: Path | None = typer.Option(None, help="DIR/<video_id>/img_00001.jpg ...", rich_help_panel=_INPUTS),
    videos_root: Path | None = typer.Option(None, help="DIR/<video_id>.<ext>, decoded with PyAV.", rich_help_panel=_INPUTS),
    frame_template: str | None = typer.Option(None, help="Frame file name template (default: img_{:05d}.jpg).", rich_help_panel=_INPUTS),
    video_ext: str | None = typer.Option(None, help="Video file extension (default: mp4).", rich_help_panel=_INPUTS),
    fps: int | None = typer.Option(None, help="Frames per second of the frames (default: 30).", rich_help_panel=_INPUTS),
    timestamp_start: int | None = typer.Option(None, help="Timestamp of the first frame (default: 900).", rich_help_panel=_INPUTS),
    start_index: int | None = typer.Option(None, help="Number of the first frame file (default: 1).", rich_help_panel=_INPUTS),
    backbone: str | None = typer.Option(None, help="Backbone name (see `lfbtool backbones`) (default: slowonly_r50).", rich_help_panel=_MODEL),
    checkpoint: Path | None = typer.Option(None, help="Detector/backbone checkpoint (MMAction2/MMEngine or state_dict).", rich_help_panel=_MODEL),
    clip_len: int | None = typer.Option(None, help="Frames per clip (default: 4).", rich_help_panel=_MODEL),
    frame_interval: int | None = typer.Option(None, help="Frames between sampled frames (default: 16).", rich_help_panel=_MODEL),
    short_side: int | None = typer.Option(None, help="Resize so the short side is this (default: 256).", rich_help_panel=_MODEL),
    roi_output_size: int | None = typer.Option(None, help="RoIAlign output size (default: 8).", rich_help_panel=_MODEL),
    roi_temporal_pool: str | None = typer.Option(None, help="avg|max over time before RoIAlign (default: avg).", rich_help_panel=_MODEL),
    temporal_pool: str | None = typer.Option(None, help="LFB head temporal pool avg|max (default: avg).", rich_help_panel=_MODEL),
    spatial_pool: str | None = typer.Option(None, help="LFB head spatial pool avg|max (default: max).", rich_help_panel=_MODEL),
    half: bool | None = typer.Option(None, "--half/--no-half", help="Store fp16 features (default: half).", rich_help_panel=_MODEL),
    batch_size: int | None = typer.Option(None, help="Keyframes per forward (default: 1).", rich_help_panel=_RUN),
    num_workers: int | None = typer.Option(None, help="DataLoader workers decoding clips (default: auto: up to 4 with CUDA, 0 on CPU where the forward uses every core).", rich_help_panel=_RUN),
    device: str | None = typer.Option(None, help="auto | cpu | cuda | cuda:N (default: auto: cuda:LOCAL_RANK if present).", rich_help_panel=_RUN),
    segment_size: int | None = typer.Option(None, help="Keyframes per crash-safe shard segment (default: 64).", rich_help_panel=_RUN),
    merge: bool | None = typer.Option(None, "--merge/--no-merge", help="Merge shards into the bank at the end (default: merge).", rich_help_panel=_RUN),
    keep_shards: bool | None = typer.Option(None, "--keep-shards/--no-keep-shards", help="Keep shards after merging.", rich_help_panel=_RUN),
    resume: bool | None = typer.Option(None, "--resume/--no-resume", help="Continue an interrupted run in OUT.", rich_help_panel=_RUN),
    overwrite: bool | None = typer.Option(None, "--overwrite/--no-overwrite", help="Delete an earlier run's results in OUT first.", rich_help_panel=_RUN),
    dist_timeout: int | None = typer.Option(None, help="torchrun process-group timeout, seconds (default: 1800).", rich_help_panel=_RUN),
) -> None:
    """Extract a Long-Term Feature Bank (one process, or every rank under torchrun)."""
    overrides = {k: v for k, v in locals().items() if k != "config"}
    from lfbtool.config import build_config
    from lfbtool.extract import run_extract

    result = run_extract(build_config(config, overrides))
    if is_main_process():
        print_extract_summary(result)


def print_extract_summary(result) -> None:
    """Plain ``name  value`` lines: full paths, never cut to the terminal width."""
    rows: list[tuple[str, str]] = []
    if result.already_complete:
        rows.append(("status", "already complete (nothing to do)"))
    rows.append(("videos", str(result.videos)))
    rows.append(("keyframes", f"{result.keyframes} ({result.extracted_now} extracted now, {result.resumed} resumed)"))
    rows.append(("boxes", str(result.boxes)))
    if result.extracted_now and result.loop_seconds > 0:
        rate = result.extracted_now / result.loop_seconds
        rows.append(("throughput", f"{rate:.2f} keyframes/s ({result.loop_seconds:.1f} s extracting, "
                                   f"{result.merge_seconds:.1f} s merging)"))
    reasons = Counter(s.reason for s in result.skipped)
    detail = ", ".join(f"{n} {reason}" for reason, n in sorted(reasons.items()))
    rows.append(("skipped", f"{len(result.skipped)} ({detail})" if result.skipped else "0"))
    rows.extend(("", f"{item.video_id},{item.timestamp:04d}: {item.reason}") for item in result.skipped[:5])
    if result.output is not None:
        rows.append(("output", str(result.output)))
        rows.append(("size", f"{result.size_bytes / 1e6:.2f} MB"))
    else:
        rows.append(("output", f"shards kept in {result.shards_dir} (merge with `lfbtool merge`)"))
    if result.world_size > 1:
        rows.append(("processes", str(result.world_size)))
    for name, value in rows:
        stdout.print(f"{name:<11}{value}", markup=False)


@app.command("merge")
def merge_command(
    inputs: list[Path] = typer.Argument(..., help="An extract OUT directory (its shards), or bank files to merge."),
    output: Path | None = typer.Option(None, "--output", "-o", help="Output bank (required when merging banks)."),
    mode: str = typer.Option("train", help="Mode of the shards to merge (OUT/lfb_{mode}.h5)."),
    on_conflict: str = typer.Option("error", help="A key stored twice with different rows: error | first."),
    keep_shards: bool = typer.Option(False, "--keep-shards", help="Keep the shards after merging."),
) -> None:
    """Merge an extraction's shards, or several banks (e.g. train + val), streaming in bounded memory."""
    from lfbtool.bank import format as fmt
    from lfbtool.bank.merge import merge_banks, merge_shards
    from lfbtool.errors import LfbError
    from lfbtool.lock import RunLock

    force = False  # the lead wires a --force option here (an existing -o is refused without it)
    if len(inputs) == 1 and inputs[0].is_dir():
        from lfbtool.bank.shards import shards_dir

        bank = output or fmt.bank_path(inputs[0], mode)
        with RunLock(inputs[0], f"lfbtool merge --mode {mode}") as lock:
            if lock.note:
                stdout.print(f"note: {lock.note}", markup=False)
            merge_shards(shards_dir(inputs[0]), bank, mode=mode, keep_shards=keep_shards, on_conflict=on_conflict,
                         overwrite=force)
        stdout.print(f"merged shards of {inputs[0]} into {bank}")
        return
    if output is None:
        raise LfbError("merging banks needs --output/-o FILE.h5")
    report = merge_banks(inputs, output, on_conflict=on_conflict, overwrite=force)
    stdout.print(f"merged {len(inputs)} banks into {report.output}: {report.keys} keyframes, {report.rows} rows")
    if report.identical_duplicates:
        stdout.print(f"{len(report.identical_duplicates)} keys stored twice with identical rows, kept once: "
                     + ", ".join(report.identical_duplicates[:5]))
    if report.conflicts_kept_first:
        stdout.print(f"{len(report.conflicts_kept_first)} conflicting keys, first kept: "
                     + ", ".join(report.conflicts_kept_first[:5]))
