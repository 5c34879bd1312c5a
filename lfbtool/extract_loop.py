"""The extraction loop of one rank: clips (DataLoader workers) -> model (batched) -> shard segments."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from typing import Any

import torch
from torch.utils.data import DataLoader

from lfbtool.bank.shards import ShardWriter
from lfbtool.data.ava import Keyframe
from lfbtool.data.clips import ClipSettings, KeyframeClips
from lfbtool.errors import LfbError, RunError
from lfbtool.models import LFBFeatureModel


def auto_workers(device: torch.device, local_world_size: int = 1) -> int:
    """DataLoader workers when ``--num-workers`` is not given.

    With CUDA the forward runs on the GPU and decoding overlaps it in up to 4 workers per process
    (bounded by the CPU cores this node gives each process). On CPU the forward already uses every
    core; workers would only take cycles from it, so clips are decoded in the main process.
    """
    if device.type != "cuda":
        return 0
    return max(1, min(4, (os.cpu_count() or 1) // max(1, local_world_size)))


def _batches(loader: DataLoader, batch_size: int) -> Iterator[list[dict[str, Any]]]:
    """Group consecutive items of one resized shape (clips of different sizes cannot be stacked)."""
    pending: list[dict[str, Any]] = []
    for item in loader:
        if "error" in item:
            raise LfbError(item["error"], exit_code=item["exit_code"])
        if pending and (len(pending) >= batch_size or pending[0]["clip"].shape != item["clip"].shape):
            yield pending
            pending = []
        pending.append(item)
    if pending:
        yield pending


def _progress(enabled: bool):
    """keyframes done / total, keyframes/s, ETA on stderr; disabled off a terminal and off rank 0."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from lfbtool.console import stderr

    return Progress(
        TextColumn("keyframes"), BarColumn(), MofNCompleteColumn(),
        TextColumn("[progress.data.speed]{task.fields[rate]}"),
        TimeRemainingColumn(), console=stderr, disable=not enabled, transient=False,
    )


def extract_block(model: LFBFeatureModel, device: torch.device, todo: list[Keyframe], settings: ClipSettings,
                  writer: ShardWriter, *, batch_size: int, num_workers: int | None,
                  show_progress: bool) -> tuple[int, float]:
    """Extract ``todo`` into ``writer``; returns the count and the loop's wall time (no model setup).

    A batch whose features hold NaN or Inf stops the run (RunError naming the keyframe) before any of
    its rows is written: a bank never stores non-finite features.
    """
    dataset = KeyframeClips(todo, settings)
    workers = num_workers
    if workers is None:
        workers = auto_workers(device, int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
    loader = DataLoader(
        dataset, batch_size=None, shuffle=False, num_workers=workers,
        pin_memory=device.type == "cuda", persistent_workers=False,
    )
    done = 0
    started = time.perf_counter()
    with _progress(show_progress) as progress:
        task = progress.add_task("extract", total=len(todo), rate="")
        for batch in _batches(loader, batch_size):
            clips = torch.stack([item["clip"] for item in batch]).to(device, non_blocking=True)
            rois = torch.cat([
                torch.cat([torch.full((len(item["boxes"]), 1), float(i)), item["boxes"]], dim=1)
                for i, item in enumerate(batch)
            ]).to(device)
            with torch.inference_mode():
                features = model(clips, rois).cpu()
            _check_finite(features, batch, todo)
            start = 0
            for item in batch:
                keyframe = todo[item["index"]]
                count = len(keyframe.boxes)
                writer.append(keyframe.video_id, keyframe.timestamp, features[start:start + count],
                              keyframe.boxes, keyframe.scores)
                start += count
            done += len(batch)
            speed = progress.tasks[0].speed
            progress.update(task, advance=len(batch), rate=f"{speed:.2f} keyframes/s" if speed else "")
    return done, time.perf_counter() - started


def _check_finite(features: torch.Tensor, batch: list[dict[str, Any]], todo: list[Keyframe]) -> None:
    """RunError naming the first keyframe of the batch whose features are not all finite."""
    finite = torch.isfinite(features).all(dim=1)
    if bool(finite.all()):
        return
    start = 0
    for item in batch:
        keyframe = todo[item["index"]]
        count = len(keyframe.boxes)
        if not bool(finite[start:start + count].all()):
            raise RunError(f"keyframe {keyframe.key}: the model produced NaN or Inf features; nothing of its "
                           "batch was written (check the checkpoint's weights and the input frames)")
        start += count
