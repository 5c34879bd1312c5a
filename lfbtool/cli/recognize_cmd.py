"""``lfbtool recognize``: multi-view (clips x crops) video classification with clip averaging.

Parses options and delegates to :func:`lfbtool.recognize.job.run_recognize` (records, result files,
resume, torchrun, embeddings, Grad-CAM); prints tables or JSON lines and the summary on rank 0.
Registered by ``lfbtool.cli`` as ``app.command("recognize")(recognize_command)``.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from lfbtool.choices import AverageClips, CropMode, Precision
from lfbtool.cli.options import Checkpoint, ComputePrecision, Device
from lfbtool.errors import LfbError
from lfbtool.runtime.console import stderr, stdout

_OUT = "Output"
_RUN = "Run"
_VIEWS = "Views"
_IN = "Inputs"

Backbone = Annotated[str, typer.Option(
    "--backbone", help="slowonly_r50, a torchvision video model (r3d_18, ...), or torchvision.<image model>.")]

_SIZE = re.compile(r"^\s*(\d+)\s*([kmgt]?)i?b?\s*$", re.IGNORECASE)


def parse_size(text: str) -> int:
    """``1GiB``, ``512M``, ``4096`` (bytes) -> bytes (binary units)."""
    match = _SIZE.match(text)
    if match is None:
        raise LfbError(f"--memory-budget {text!r}: give bytes or a size like 512MiB, 1GiB")
    return int(match.group(1)) * 1024 ** " kmgt".index((match.group(2) or " ").lower())


def recognize_command(
    backbone: Backbone,
    inputs: Annotated[list[str] | None, typer.Argument(
        help="Video files or frame directories; @list.txt reads one path per line (nested @lists too).")] = None,
    checkpoint: Checkpoint = None,
    weights: Annotated[str | None, typer.Option(
        "--weights", help="torchvision weights, e.g. R3D_18_Weights.KINETICS400_V1 (needs network or torch's cache).")] = None,
    num_clips: Annotated[int | None, typer.Option("--num-clips", help="Test clips per video (model default).",
                                                  rich_help_panel=_VIEWS)] = None,
    clip_len: Annotated[int | None, typer.Option("--clip-len", help="Frames per clip (model default; 1 for 2D models).",
                                                 rich_help_panel=_VIEWS)] = None,
    frame_interval: Annotated[int | None, typer.Option("--frame-interval", help="Step between frames of a clip.",
                                                       rich_help_panel=_VIEWS)] = None,
    short_side: Annotated[int | None, typer.Option("--short-side", help="Resize the short side to this (model default).",
                                                   rich_help_panel=_VIEWS)] = None,
    crop_size: Annotated[int | None, typer.Option("--crop-size", help="Square crop (model default); three crops span the short side.",
                                                  rich_help_panel=_VIEWS)] = None,
    crops: Annotated[CropMode | None, typer.Option("--crops", help="center | three | ten (MMAction2 CenterCrop / ThreeCrop / "
                                                   "TenCrop; model default, mostly center).", rich_help_panel=_VIEWS)] = None,
    average_clips: Annotated[AverageClips | None, typer.Option("--average-clips", help="score (mean logits) | prob (mean "
                                                               "softmax) | none (per view); model default, mostly score.",
                                                               rich_help_panel=_VIEWS)] = None,
    loop: Annotated[bool, typer.Option("--loop/--no-loop", help="Loop the frames of a video shorter than one clip "
                                       "(MMAction2); --no-loop makes it a failed input.", rich_help_panel=_VIEWS)] = True,
    max_testing_views: Annotated[int | None, typer.Option("--max-testing-views", help="At most this many views per forward.",
                                                          rich_help_panel=_RUN)] = None,
    memory_budget: Annotated[str, typer.Option("--memory-budget", help="Bound on one input's decoded uint8 views; "
                                               "more clips are decoded and scored in groups.", rich_help_panel=_RUN)] = "1GiB",
    precision: ComputePrecision = Precision.fp32,
    top_k: Annotated[int, typer.Option("--top-k", help="Rows of the table per video.", rich_help_panel=_OUT)] = 5,
    labels: Annotated[str | None, typer.Option("--labels", help="Class names, one per line; 'kinetics400' for "
                                               "torchvision's Kinetics-400 names.", rich_help_panel=_OUT)] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON line per video instead of tables.",
                                          rich_help_panel=_OUT)] = False,
    out: Annotated[Path | None, typer.Option("--out", help="Write the JSON lines to this file (input order).",
                                             rich_help_panel=_OUT)] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue the run recorded in --out: skip recorded inputs.",
                                         rich_help_panel=_OUT)] = False,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing --out / --features.",
                                            rich_help_panel=_OUT)] = False,
    features: Annotated[Path | None, typer.Option("--features", help="Write clip embeddings (classifier input) to this HDF5 file.",
                                                  rich_help_panel=_OUT)] = None,
    gradcam: Annotated[Path | None, typer.Option("--gradcam", help="Write Grad-CAM pictures (PNG, GIF, .npy) into this directory.",
                                                 rich_help_panel=_OUT)] = None,
    gradcam_layer: Annotated[str | None, typer.Option("--gradcam-layer", help="Module name (default: the last backbone stage).",
                                                      rich_help_panel=_OUT)] = None,
    gradcam_class: Annotated[int | None, typer.Option("--gradcam-class", help="Class index (default: the top-1).",
                                                      rich_help_panel=_OUT)] = None,
    ann_file: Annotated[Path | None, typer.Option("--ann-file", help="MMAction2 annotation list instead of INPUTS: "
                                                  "'path label' (video) or 'frame_dir total_frames label' (rawframes) "
                                                  "lines; labels give accuracy.", rich_help_panel=_IN)] = None,
    ann_format: Annotated[str, typer.Option("--ann-format", help="video | rawframes: the --ann-file layout "
                                            "(MMAction2 VideoDataset / RawframeDataset).", rich_help_panel=_IN)] = "video",
    data_prefix: Annotated[Path | None, typer.Option("--data-prefix", help="Directory the --ann-file paths are "
                                                     "joined to (MMAction2's data_prefix).", rich_help_panel=_IN)] = None,
    dump: Annotated[Path | None, typer.Option("--dump", help="Write MMAction2's results pickle (tools/test.py --dump "
                                              "layout) to this .pkl file.", rich_help_panel=_OUT)] = None,
    gradcam_clips: Annotated[str, typer.Option("--gradcam-clips", help="Views to explain: top (the top-scoring view) | "
                                               "all | view indices like 0,3 (crop-major; crops for 2D models).",
                                               rich_help_panel=_OUT)] = "top",
    fail_fast: Annotated[bool, typer.Option("--fail-fast", help="Stop at the first bad input (default: record it, go on).",
                                            rich_help_panel=_RUN)] = False,
    device: Device = "auto",
    batch_videos: Annotated[int, typer.Option("--batch-videos", help="Videos whose views share forwards.",
                                              rich_help_panel=_RUN)] = 1,
    frame_template: Annotated[str, typer.Option("--frame-template", help="File names in frame directories.")] = "img_{:05d}.jpg",
    start_index: Annotated[int, typer.Option("--start-index", help="Number of the first frame file (1 for img_00001.jpg).")] = 1,
) -> None:
    """Classify videos with MMAction2's multi-view test path and print the top classes."""
    from lfbtool.choices import AnnFormat
    from lfbtool.recognize.lists import input_list, read_annotations
    from lfbtool.recognize.metrics import check_dump_path

    # the inputs are read once, here, before the model loads: a bad list line costs no torch start-up
    if ann_file is not None and inputs:
        raise LfbError("pass INPUTS or --ann-file, not both")
    if data_prefix is not None and ann_file is None:
        raise LfbError("--data-prefix joins the paths of --ann-file; pass --ann-file too")
    if dump is not None:
        check_dump_path(dump)
    fmt = AnnFormat.parse(ann_format, "--ann-format")
    given = read_annotations(ann_file, fmt, data_prefix) if ann_file is not None else input_list(inputs or [])

    from lfbtool.models.recognizer_factory import build_recognizer
    from lfbtool.recognize.job import RecognizeJob, run_recognize, run_settings
    from lfbtool.recognize.scoring import RecognizeOptions, load_labels, resolve_settings
    from lfbtool.runtime import is_main_process, resolve_device
    from lfbtool.runtime.console import print_warning
    from lfbtool.runtime.distributed import init_from_env, shutdown
    from lfbtool.runtime.precision import check_precision

    if checkpoint is None and weights is None:
        raise LfbError("pass --checkpoint PATH or --weights NAME: a recognizer with random weights classifies nothing")
    if top_k < 1:
        raise LfbError(f"--top-k must be >= 1, got {top_k}")
    target = resolve_device(device)
    # auto resolved before run_settings: the records' fingerprint holds the concrete precision
    precision = check_precision(precision, target, warn=print_warning if is_main_process() else None)
    built = build_recognizer(backbone, checkpoint=str(checkpoint) if checkpoint else None, weights=weights)
    recognizer = built.recognizer
    names = load_labels(labels, recognizer.num_classes, built.categories)
    given.check_labels(recognizer.num_classes)
    settings = resolve_settings(recognizer, RecognizeOptions(
        num_clips=num_clips, clip_len=clip_len, frame_interval=frame_interval, short_side=short_side,
        crop_size=crop_size, crops=crops, average_clips=average_clips, max_testing_views=max_testing_views,
        batch_videos=batch_videos, template=frame_template, start_index=start_index, loop=loop,
        memory_budget=parse_size(memory_budget), precision=precision))
    job = RecognizeJob(out=out, features=features, gradcam_dir=gradcam, gradcam_layer=gradcam_layer,
                       gradcam_class=gradcam_class, resume=resume, overwrite=overwrite, keep_going=not fail_fast,
                       gradcam_clips=gradcam_clips, top_k=top_k, progress=sys.stderr.isatty())
    if gradcam is not None:
        from lfbtool.recognize.gradcam_views import parse_gradcam_clips

        parse_gradcam_clips(gradcam_clips, settings, recognizer.is_2d)
    info = run_settings(recognizer, settings, job, checkpoint=checkpoint, weights=weights, names=names)
    ctx = init_from_env()
    try:
        if ctx.is_main:
            stderr.print(
                f"{backbone}: {settings.num_clips} clips x {settings.num_crops} {settings.crops} crop(s) = "
                f"{settings.views_per_video} views of {settings.clip_len}x{settings.frame_interval} frames, short side "
                f"{settings.short_side}, crop {settings.crop_size}, average {settings.average_clips}, on {target}, "
                f"precision {settings.precision}" + (f", {ctx.world_size} ranks" if ctx.world_size > 1 else ""),
                markup=False,
            )
        summary = run_recognize(
            given, recognizer, settings, job, info, names=names, device=target, ctx=ctx,
            on_record=lambda record: _show(record, as_json),
            on_failure=lambda record: stderr.print(f"failed: {record['error']}", style="red", markup=False),
            on_notice=lambda text: stderr.print(f"notice: {text}", style="yellow", markup=False),
        )
    finally:
        shutdown(ctx)
    if ctx.is_main:
        done = len(summary.records) - len(summary.failures)
        skipped = f", {summary.skipped} already recorded" if summary.skipped else ""
        stderr.print(f"{done} of {len(summary.records)} inputs scored{skipped}", markup=False)
        for record in summary.failures:
            stderr.print(f"  failed: {record['input']}: {record['error']}", style="red", markup=False)
        if summary.metrics is not None:
            _show_metrics(summary.metrics, as_json)
        if dump is not None:
            from lfbtool.recognize.metrics import write_dump

            write_dump(dump, summary.records, settings.crop_size)
            stderr.print(f"dump: {dump} ({len(summary.records)} samples, MMAction2 tools/test.py --dump layout)",
                         markup=False)
    if summary.failures:
        raise typer.Exit(code=1)


def _show_metrics(metrics: dict[str, Any], as_json: bool) -> None:
    """The accuracy line on stderr (and, with --json, one last ``{"metrics": ...}`` line on stdout)."""
    left_out = metrics["labelled"] - metrics["evaluated"]
    note = f" ({left_out} failed, left out)" if left_out else ""
    if "acc/top1" in metrics:
        stderr.print(f"accuracy over {metrics['evaluated']} labelled inputs{note}: top-1 {metrics['acc/top1']:.4f}, "
                     f"top-5 {metrics['acc/top5']:.4f}, mean class {metrics['acc/mean1']:.4f}", markup=False)
    if as_json:
        stdout.file.write(json.dumps({"metrics": metrics}) + "\n")
        stdout.file.flush()


def _show(record: dict[str, Any], as_json: bool) -> None:
    if as_json:
        stdout.file.write(json.dumps(record) + "\n")
        stdout.file.flush()
    elif record.get("error") is None:
        _print_table(record)


def _print_table(record: dict[str, Any]) -> None:
    note = " (mean of per-view scores)" if record["average_clips"] == "none" else ""
    table = Table("rank", "label", "score", title=f"{record['input']}: {record['views']} views{note}",
                  title_justify="left")
    for row in record["top_k"]:
        table.add_row(str(row["rank"]), row["label"], f"{row['score']:.4f}")
    stdout.print(table)
