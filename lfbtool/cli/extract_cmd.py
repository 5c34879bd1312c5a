"""``lfbtool extract`` and ``lfbtool merge``: parse options, call the library, print the summary (rank 0)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Annotated

import typer

from lfbtool.choices import KeyframeSource, OnConflict, Pool, Precision
from lfbtool.cli.options import PRECISION_HELP, Force
from lfbtool.errors import LfbError
from lfbtool.extract.config import build_config, default_of
from lfbtool.keys import key_text
from lfbtool.runtime import is_main_process
from lfbtool.runtime.console import some, stdout

_INPUTS = "Inputs"
_MODEL = "Model"
_DETECT = "Person detection"
_RUN = "Run"


def _opt(help_text: str, *names: str, panel: str | None = None, default: str | None = None) -> typer.models.OptionInfo:
    """An extract option whose ``--help`` ends with its default, read from ExtractConfig (never restated)."""
    suffix = f" (default: {default_of(default)})" if default is not None else ""
    return typer.Option(*names, help=help_text + suffix, rich_help_panel=panel)


def extract_command(
    out: Annotated[Path | None, _opt("Output directory (bank: OUT/lfb_{mode}.h5).", "--out", "-o", default="out")] = None,
    mode: Annotated[str | None, _opt("Dataset mode, names the bank file.", default="mode")] = None,
    config: Annotated[Path | None, typer.Option("--config", help="TOML file setting any option; options given here win.")] = None,
    keyframes: Annotated[KeyframeSource | None, _opt("annotated (MMAction2) | proposals (original LFB) | every-second (own videos: detect persons first).", panel=_INPUTS, default="keyframes")] = None,
    annotations: Annotated[Path | None, _opt("AVA annotation CSV.", panel=_INPUTS)] = None,
    excluded: Annotated[Path | None, _opt("Excluded-timestamps CSV.", panel=_INPUTS)] = None,
    proposals: Annotated[Path | None, _opt("Person proposals (.pkl or .csv).", panel=_INPUTS)] = None,
    proposal_score_threshold: Annotated[float | None, _opt("Keep proposals scoring at least this (a keyframe with none keeps its best, as MMAction2) (default: every box the detector kept, for every-second and for `lfbtool detect` outputs; else 0.9).", panel=_INPUTS)] = None,
    score_threshold: Annotated[float | None, typer.Option("--score-threshold", hidden=True, help="Deprecated name of --proposal-score-threshold.")] = None,
    whole_frame_fallback: Annotated[bool | None, _opt("Keyframes without proposals get box [0,0,1,1] (MMAction2) instead of being skipped.", "--whole-frame-fallback/--no-whole-frame-fallback", panel=_INPUTS, default="whole_frame_fallback")] = None,
    frames_root: Annotated[Path | None, _opt("DIR/<video_id>/img_00001.jpg ...", panel=_INPUTS)] = None,
    videos_root: Annotated[Path | None, _opt("DIR/<video_id>.<ext>, decoded with PyAV.", panel=_INPUTS)] = None,
    frame_template: Annotated[str | None, _opt("Frame file name template.", panel=_INPUTS, default="frame_template")] = None,
    video_ext: Annotated[str | None, _opt("Video file extension.", panel=_INPUTS, default="video_ext")] = None,
    fps: Annotated[str | None, _opt("Frame rate: 30, 29.97, 30000/1001, or auto (each video file's own rate) "
                                    "(default: auto for every-second on videos, else 30).", panel=_INPUTS)] = None,
    timestamp_start: Annotated[int | None, _opt("Second of the first frame (default: 0 for every-second, else 900 as AVA).", panel=_INPUTS)] = None,
    start_index: Annotated[int | None, _opt("Number of the first frame file.", panel=_INPUTS, default="start_index")] = None,
    video_list: Annotated[Path | None, _opt("every-second: the videos to use, one id per line (default: all in the root).", panel=_INPUTS)] = None,
    stride: Annotated[int | None, _opt("every-second: use every Nth second.", panel=_INPUTS, default="stride")] = None,
    detector: Annotated[str | None, _opt("every-second: torchvision person detector.", panel=_DETECT, default="detector")] = None,
    detector_checkpoint: Annotated[Path | None, _opt("every-second: the detector's state_dict (offline).", panel=_DETECT)] = None,
    detector_weights: Annotated[str | None, _opt("every-second: torchvision weights name (downloads).", panel=_DETECT)] = None,
    detector_score_threshold: Annotated[float | None, _opt("every-second: keep persons scoring at least this.", panel=_DETECT, default="detector_score_threshold")] = None,
    max_per_frame: Annotated[int | None, _opt("every-second: at most this many persons per keyframe.", panel=_DETECT, default="max_per_frame")] = None,
    detector_min_size: Annotated[int | None, _opt("every-second: the detector's internal resize, short side (default: the model's own: 320 for the *_320_fpn model, 800 for most; SSD models have a fixed size and take neither option).", panel=_DETECT)] = None,
    detector_max_size: Annotated[int | None, _opt("every-second: the detector's internal resize, long side at most (default: the model's own: 640 / 1333).", panel=_DETECT)] = None,
    backbone: Annotated[str | None, _opt("Backbone name (see `lfbtool backbones`).", panel=_MODEL, default="backbone")] = None,
    checkpoint: Annotated[Path | None, _opt("Detector/backbone checkpoint (MMAction2/MMEngine/MMCV or state_dict).", panel=_MODEL)] = None,
    clip_len: Annotated[int | None, _opt("Frames per clip (default: the backbone's AVA clip).", panel=_MODEL)] = None,
    frame_interval: Annotated[int | None, _opt("Frames between sampled frames (default: the backbone's AVA clip).", panel=_MODEL)] = None,
    short_side: Annotated[int | None, _opt("Resize so the short side is this.", panel=_MODEL, default="short_side")] = None,
    roi_output_size: Annotated[int | None, _opt("RoIAlign output size.", panel=_MODEL, default="roi_output_size")] = None,
    roi_temporal_pool: Annotated[Pool | None, _opt("avg|max over time before RoIAlign.", panel=_MODEL, default="roi_temporal_pool")] = None,
    temporal_pool: Annotated[Pool | None, _opt("LFB head temporal pool.", panel=_MODEL, default="temporal_pool")] = None,
    spatial_pool: Annotated[Pool | None, _opt("LFB head spatial pool.", panel=_MODEL, default="spatial_pool")] = None,
    half: Annotated[bool | None, _opt("Store fp16 features.", "--half/--no-half", panel=_MODEL, default="half")] = None,
    precision: Annotated[Precision | None, _opt(PRECISION_HELP, panel=_MODEL, default="precision")] = None,
    batch_size: Annotated[int | None, _opt("Keyframes per forward.", panel=_RUN, default="batch_size")] = None,
    num_workers: Annotated[int | None, _opt("DataLoader workers decoding clips (default: auto: up to 4 with CUDA, 0 on CPU where the forward uses every core).", panel=_RUN)] = None,
    device: Annotated[str | None, _opt("auto | cpu | cuda | cuda:N (auto: cuda:LOCAL_RANK if present).", panel=_RUN, default="device")] = None,
    segment_size: Annotated[int | None, _opt("Keyframes per crash-safe shard segment.", panel=_RUN, default="segment_size")] = None,
    merge: Annotated[bool | None, _opt("Merge shards into the bank at the end.", "--merge/--no-merge", panel=_RUN, default="merge")] = None,
    keep_shards: Annotated[bool | None, _opt("Keep shards after merging.", "--keep-shards/--no-keep-shards", panel=_RUN, default="keep_shards")] = None,
    resume: Annotated[bool | None, _opt("Continue an interrupted run in OUT.", "--resume/--no-resume", panel=_RUN, default="resume")] = None,
    overwrite: Annotated[bool | None, _opt("Delete an earlier run's results in OUT first.", "--overwrite/--no-overwrite", panel=_RUN, default="overwrite")] = None,
    dist_timeout: Annotated[int | None, _opt("torchrun process-group timeout, seconds.", panel=_RUN, default="dist_timeout")] = None,
) -> None:
    """Extract a Long-Term Feature Bank (one process, or every rank under torchrun)."""
    from lfbtool.extract.run import run_extract

    if score_threshold is not None:  # the old name of the proposal filter's threshold
        from lfbtool.extract.config import deprecation_note

        deprecation_note("--score-threshold is now --proposal-score-threshold")
        if proposal_score_threshold is None:
            proposal_score_threshold = score_threshold
    overrides = dict(
        out=out, mode=mode, keyframes=keyframes, annotations=annotations, excluded=excluded, proposals=proposals,
        proposal_score_threshold=proposal_score_threshold, whole_frame_fallback=whole_frame_fallback, frames_root=frames_root,
        videos_root=videos_root, frame_template=frame_template, video_ext=video_ext, fps=fps,
        timestamp_start=timestamp_start, start_index=start_index, video_list=video_list, stride=stride,
        detector=detector, detector_checkpoint=detector_checkpoint, detector_weights=detector_weights,
        detector_score_threshold=detector_score_threshold, max_per_frame=max_per_frame,
        detector_min_size=detector_min_size, detector_max_size=detector_max_size, precision=precision,
        backbone=backbone, checkpoint=checkpoint,
        clip_len=clip_len, frame_interval=frame_interval, short_side=short_side, roi_output_size=roi_output_size,
        roi_temporal_pool=roi_temporal_pool, temporal_pool=temporal_pool, spatial_pool=spatial_pool, half=half,
        batch_size=batch_size, num_workers=num_workers, device=device, segment_size=segment_size, merge=merge,
        keep_shards=keep_shards, resume=resume, overwrite=overwrite, dist_timeout=dist_timeout,
    )
    result = run_extract(build_config(config, overrides))
    if is_main_process():
        print_extract_summary(result)


#: Skipped keyframes listed one a line under the count; the rest are counted ("+N more").
SHOWN_SKIPPED = 5


def print_extract_summary(result) -> None:
    """Plain ``name  value`` lines: full paths, never cut to the terminal width."""
    from lfbtool.extract.outcome import no_keyframe_text

    rows: list[tuple[str, str]] = []
    merged = result.output is not None
    if result.already_complete:
        rows.append(("status", "already complete (nothing to do)"))
    videos = str(result.videos)
    if result.no_keyframe:
        videos = f"{result.videos} of {result.input_videos} ({no_keyframe_text(result.no_keyframe)})"
    rows.append(("videos", videos))
    done = f"{result.extracted_now} extracted now, {result.resumed} resumed"
    rows.append(("keyframes", f"{result.keyframes} ({done})" if merged else
                 f"{result.keyframes} in {result.parts} parts, not merged into a bank yet ({done})"))
    rows.append(("boxes", str(result.boxes)))
    rows.append(("filters", filters_text(result)))
    rows.append(("precision", result.precision))
    if result.extracted_now and result.loop_seconds > 0:
        rate = result.extracted_now / result.loop_seconds
        merging = f", {result.merge_seconds:.1f} s merging" if merged else ""
        rows.append(("throughput", f"{rate:.2f} keyframes/s ({result.loop_seconds:.1f} s extracting{merging})"))
    reasons = Counter(s.reason for s in result.skipped)
    detail = ", ".join(f"{n} {reason}" for reason, n in sorted(reasons.items()))
    rows.append(("skipped", f"{len(result.skipped)} ({detail})" if result.skipped else "0"))
    rows.extend(("", f"{key_text(item.video_id, item.timestamp)}: {item.reason}")
                for item in result.skipped[:SHOWN_SKIPPED])
    if len(result.skipped) > SHOWN_SKIPPED:
        rows.append(("", f"+{len(result.skipped) - SHOWN_SKIPPED} more"))
    if merged:
        rows.append(("output", str(result.output)))
        rows.append(("size", f"{result.size_bytes / 1e6:.2f} MB"))
    else:
        rows.append(("output", f"parts in {result.shards_dir}"))
        rows.append(("next", f"lfbtool merge {result.out} --mode {result.mode}   (writes the bank "
                             f"{result.out}/lfb_{result.mode}.h5)"))
    if result.world_size > 1:
        rows.append(("processes", str(result.world_size)))
    for name, value in rows:
        stdout.print(f"{name:<11}{value}", markup=False)


def filters_text(result) -> str:
    """Which box filters applied and how many boxes each removed: never a silent cut."""
    removed = result.removed
    parts = []
    if result.detector_score_threshold is not None:
        parts.append(f"detector score >= {result.detector_score_threshold:g} removed "
                     f"{removed.get('detector_score_threshold', 0)}, max per frame removed "
                     f"{removed.get('max_per_frame', 0)} (seconds detected now)")
    threshold = result.proposal_score_threshold
    if result.score_threshold_from == "detector":
        parts.append(f"proposal score >= {threshold:g} (the detector's; every box it kept stays) removed "
                     f"{removed.get('proposal_score_threshold', 0)}")
    elif threshold is not None:
        parts.append(f"proposal score >= {threshold:g} (or a keyframe's best) removed "
                     f"{removed.get('proposal_score_threshold', 0)}")
    if removed.get("max_proposals"):
        parts.append(f"max proposals per keyframe removed {removed['max_proposals']}")
    return "; ".join(parts) or "none"


def merge_command(
    inputs: Annotated[list[Path], typer.Argument(help="An extract OUT directory (its shards), or bank files to merge.")],
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Output bank (required when merging banks).")] = None,
    mode: Annotated[str, typer.Option(help="Mode of the shards to merge (OUT/lfb_{mode}.h5).")] = "train",
    on_conflict: Annotated[OnConflict, typer.Option(help="A key stored twice with different rows: error | first.")] = OnConflict.error,
    keep_shards: Annotated[bool, typer.Option("--keep-shards", help="Keep the shards after merging.")] = False,
    force: Force = False,
) -> None:
    """Merge an extraction's shards, or several banks (e.g. train + val), streaming in bounded memory."""
    from lfbtool._io.lock import RunLock
    from lfbtool.bank import format as fmt
    from lfbtool.bank.merge import merge_banks
    from lfbtool.extract._segments import merge_shards, shards_dir
    from lfbtool.runs.naming import check_mode

    check_mode(mode)  # the one mode rule, also where only bank files are merged
    if len(inputs) == 1 and inputs[0].is_dir():
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
                     + some(report.identical_duplicates))
    if report.conflicts_kept_first:
        stdout.print(f"{len(report.conflicts_kept_first)} conflicting keys, first kept: "
                     + some(report.conflicts_kept_first))
