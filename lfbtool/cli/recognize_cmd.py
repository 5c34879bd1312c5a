"""``lfbtool recognize``: multi-view (clips x crops) video classification with clip averaging."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from lfbtool.console import stderr, stdout
from lfbtool.errors import LfbError


def recognize_command(
    inputs: list[str] = typer.Argument(
        ..., help="Video files or frame directories; @list.txt reads one path per line."
    ),
    backbone: str = typer.Option(
        ...,
        "--backbone",
        help="slowonly_r50, a torchvision video model (r3d_18, ...), or torchvision.<image model>.",
    ),
    checkpoint: Path | None = typer.Option(
        None,
        "--checkpoint",
        help="Local checkpoint (MMAction2 Recognizer3D layout, or a torchvision state_dict).",
    ),
    weights: str | None = typer.Option(
        None,
        "--weights",
        help="torchvision weights, e.g. R3D_18_Weights.KINETICS400_V1 (needs network or torch's cache).",
    ),
    num_clips: int | None = typer.Option(None, "--num-clips", help="Test clips per video (model default)."),
    clip_len: int | None = typer.Option(
        None, "--clip-len", help="Frames per clip (model default; 1 for 2D models)."
    ),
    frame_interval: int | None = typer.Option(
        None, "--frame-interval", help="Step between frames of a clip (model default)."
    ),
    short_side: int | None = typer.Option(
        None, "--short-side", help="Resize the short side to this (model default: 256 for slowonly_r50)."
    ),
    crop_size: int | None = typer.Option(
        None,
        "--crop-size",
        help="Square crop (model default: 224 for slowonly_r50); three crops span the short side.",
    ),
    crops: str = typer.Option(
        "center", "--crops", help="center | three | ten (MMAction2 CenterCrop / ThreeCrop / TenCrop)."
    ),
    average_clips: str = typer.Option(
        "score", "--average-clips", help="score (mean logits) | prob (mean softmax) | none (per-view scores)."
    ),
    max_testing_views: int | None = typer.Option(
        None,
        "--max-testing-views",
        help="At most this many views per forward (less memory; same scores up to float rounding).",
    ),
    top_k: int = typer.Option(5, "--top-k", help="Rows of the table per video."),
    labels: str | None = typer.Option(
        None,
        "--labels",
        help="Class names, one per line; 'kinetics400' for torchvision's Kinetics-400 names.",
    ),
    as_json: bool = typer.Option(
        False, "--json", help="Print one JSON line per video with every score instead of tables."
    ),
    out: Path | None = typer.Option(
        None, "--out", help="Also write JSON lines with every score to this file."
    ),
    device: str = typer.Option("auto", "--device", help="auto (cuda when present), cpu, cuda, cuda:1, ..."),
    batch_videos: int = typer.Option(1, "--batch-videos", help="Videos whose views share forwards."),
    frame_template: str = typer.Option(
        "img_{:05d}.jpg", "--frame-template", help="File names in frame directories."
    ),
    start_index: int = typer.Option(
        1, "--start-index", help="Number of the first frame file (1 for img_00001.jpg)."
    ),
) -> None:
    """Classify videos with MMAction2's multi-view test path and print the top classes."""
    import torch

    from lfbtool.models.recognizer_factory import build_recognizer
    from lfbtool.recognize import RecognizeOptions, load_labels, recognize, resolve_settings
    from lfbtool.recognize import top_k as best

    if checkpoint is None and weights is None:
        raise LfbError(
            "pass --checkpoint PATH or --weights NAME: a recognizer with random weights classifies nothing"
        )
    if top_k < 1:
        raise LfbError(f"--top-k must be >= 1, got {top_k}")
    built = build_recognizer(backbone, checkpoint=str(checkpoint) if checkpoint else None, weights=weights)
    recognizer = built.recognizer
    names = load_labels(labels, recognizer.num_classes, built.categories)
    settings = resolve_settings(
        recognizer,
        RecognizeOptions(
            num_clips=num_clips,
            clip_len=clip_len,
            frame_interval=frame_interval,
            short_side=short_side,
            crop_size=crop_size,
            crops=crops,
            average_clips=average_clips,
            max_testing_views=max_testing_views,
            batch_videos=batch_videos,
            template=frame_template,
            start_index=start_index,
        ),
    )
    target = _device(device, torch)
    stderr.print(
        f"{backbone}: {settings.num_clips} clips x {settings.num_crops} {settings.crops} crop(s) = "
        f"{settings.views_per_video} views of {settings.clip_len}x{settings.frame_interval} frames, "
        f"short side {settings.short_side}, crop {settings.crop_size}, average {settings.average_clips}, on {target}",
        markup=False,
    )
    tmp = out.with_name(f"{out.name}.tmp-{os.getpid()}") if out is not None else None
    sink = tmp.open("w", encoding="utf-8") if tmp is not None else None
    try:
        for result in recognize(
            inputs,
            recognizer,
            settings,
            device=target,
            on_notice=lambda text: stderr.print(f"notice: {text}", style="yellow", markup=False),
        ):
            ranked = best(result.scores, top_k)
            record = _record(result, ranked, names, settings.average_clips)
            if sink is not None:
                sink.write(json.dumps(record) + "\n")
            if as_json:
                stdout.file.write(json.dumps(record) + "\n")
                stdout.file.flush()
            else:
                _print_table(record, settings.average_clips)
        if sink is not None:
            sink.close()
            sink = None
            os.replace(tmp, out)  # type: ignore[arg-type]
    finally:
        if sink is not None:
            sink.close()
            tmp.unlink(missing_ok=True)  # type: ignore[union-attr]


def _device(requested: str, torch: Any) -> Any:
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(requested)
    except RuntimeError as error:
        raise LfbError(f"--device {requested!r} is not a device (cpu, cuda, cuda:0, ...)") from error
    if device.type == "cuda" and not torch.cuda.is_available():
        raise LfbError(f"--device {requested}: CUDA is not available here")
    return device


def _record(
    result: Any, ranked: list[tuple[int, float]], names: list[str] | None, average: str
) -> dict[str, Any]:
    def label(index: int) -> str:
        return names[index] if names is not None else str(index)

    return {
        "input": result.input,
        "num_frames": result.num_frames,
        "views": result.num_views,
        "looped": result.looped,
        "average_clips": average,
        "top_k": [
            {"rank": r + 1, "index": i, "label": label(i), "score": s} for r, (i, s) in enumerate(ranked)
        ],
        "scores": result.scores.tolist(),
    }


def _print_table(record: dict[str, Any], average: str) -> None:
    note = " (mean of per-view scores)" if average == "none" else ""
    table = Table(
        "rank",
        "label",
        "score",
        title=f"{record['input']}: {record['views']} views{note}",
        title_justify="left",
    )
    for row in record["top_k"]:
        table.add_row(str(row["rank"]), row["label"], f"{row['score']:.4f}")
    stdout.print(table)
