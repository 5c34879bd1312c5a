"""The extraction loop of one rank: clips (DataLoader workers) -> model (batched) -> shard segments."""

from __future__ import annotations

import os
import time

import torch
from torch.utils.data import DataLoader

from lfbtool.data.ava import Keyframe
from lfbtool.data.batching import BatchPlan, InOrder, KeyframeChunks, VideoChunkSampler, collate_clips
from lfbtool.data.clips import ClipSettings, KeyframeClips
from lfbtool.errors import LfbError, RunError
from lfbtool.models import LFBFeatureModel
from lfbtool.runs.parts import PartWriter
from lfbtool.runtime.console import progress_bar

#: Batches each DataLoader worker decodes ahead of the forward.
PREFETCH_BATCHES = 4


def auto_workers(device: torch.device, local_world_size: int = 1) -> int:
    """DataLoader workers when ``--num-workers`` is not given.

    With CUDA the forward runs on the GPU and decoding overlaps it in up to 4 workers per process
    (bounded by the CPU cores this node gives each process). On CPU the forward already uses every
    core; workers would only take cycles from it, so clips are decoded in the main process.
    """
    if device.type != "cuda":
        return 0
    return max(1, min(4, (os.cpu_count() or 1) // max(1, local_world_size)))


def extract_block(model: LFBFeatureModel, device: torch.device, keyframes: list[Keyframe], plan: BatchPlan,
                  settings: ClipSettings, writer: PartWriter, *, num_workers: int | None,
                  show_progress: bool) -> tuple[int, float]:
    """Compute ``plan``'s batches of ``keyframes`` (the run's whole list) and write the rows the plan
    gives this rank; returns the count written and the loop's wall time (no model setup).

    Each DataLoader worker decodes contiguous runs of one video's keyframes (so every frame is decoded
    once) and builds whole batches; the rows are put back in keyframe order before the writer. A batch
    whose features hold NaN or Inf stops the run (RunError naming the keyframe) before any of its rows
    is written: a bank never stores non-finite features.
    """
    workers = num_workers
    if workers is None:
        workers = auto_workers(device, int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
    todo = [keyframes[position] for position in plan.compute]
    dataset = KeyframeChunks(KeyframeClips(todo, settings), collate=collate_clips)
    loader = DataLoader(
        dataset, sampler=VideoChunkSampler.of_plan(plan, num_workers=workers), batch_size=None, num_workers=workers,
        pin_memory=device.type == "cuda", prefetch_factor=PREFETCH_BATCHES if workers else None,
        persistent_workers=False,
    )
    order = InOrder()  # workers run ahead on later runs; rows reach the writer in keyframe order
    done = 0
    started = time.perf_counter()
    with progress_bar("keyframes", show_progress) as progress:
        task = progress.add_task("extract", total=sum(plan.write), rate="")
        for chunk in loader:
            for batch in chunk:
                if "error" in batch:
                    raise LfbError(batch["error"], exit_code=batch["exit_code"])
                clips = batch["clips"].to(device, non_blocking=True)
                rois = batch["rois"].to(device, non_blocking=True)
                with torch.inference_mode():
                    features = model(clips, rois).cpu()
                indices = list(batch["indices"])
                _check_finite(features, indices, todo)
                counts = [len(todo[index].boxes) for index in indices]
                for index, rows in zip(indices, features.split(counts), strict=True):
                    for ready, ready_rows in order.push(index, (index, rows)):
                        if plan.write[ready]:  # else: stored already, or another rank's (computed for its batch)
                            keyframe = todo[ready]
                            writer.append((keyframe.video_id, keyframe.timestamp),
                                          (ready_rows, keyframe.boxes, keyframe.scores))
                written = sum(plan.write[index] for index in indices)
                done += written
                speed = progress.tasks[0].speed
                progress.update(task, advance=written, rate=f"{speed:.2f} keyframes/s" if speed else "")
    if len(order):
        raise RunError(f"{len(order)} keyframes never reached the writer (a DataLoader item was lost)")
    return done, time.perf_counter() - started


def _check_finite(features: torch.Tensor, indices: list[int], todo: list[Keyframe]) -> None:
    """RunError naming the first keyframe of the batch whose features are not all finite."""
    finite = torch.isfinite(features).all(dim=1)
    if bool(finite.all()):
        return
    start = 0
    for index in indices:
        keyframe = todo[index]
        count = len(keyframe.boxes)
        if not bool(finite[start:start + count].all()):
            raise RunError(f"keyframe {keyframe.key}: the model produced NaN or Inf features; nothing of its "
                           "batch was written (check the checkpoint's weights and the input frames)")
        start += count
