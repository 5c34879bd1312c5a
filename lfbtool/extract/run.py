"""The extraction run: keyframes -> clips (workers) -> model (batched) -> shard segments -> merged bank.

One process or many under torchrun: keyframes still to do are split into contiguous, unpadded blocks,
one per rank; each rank writes its own segments; rank 0 merges after a barrier. ``--resume`` treats
every keyframe stored in a complete segment as done, whatever the number of ranks that wrote it.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from lfbtool._io.atomic import check_output_path
from lfbtool._io.lock import RunLock
from lfbtool.bank import format as fmt
from lfbtool.bank.merge import MergeReport
from lfbtool.choices import KeyframeSource, Precision
from lfbtool.data.ava import (
    Keyframe,
    Skipped,
    build_keyframes,
    read_annotations,
    read_excluded,
    read_proposals,
)
from lfbtool.data.batching import plan_batches
from lfbtool.data.clips import ClipSettings, keyframes_inside
from lfbtool.data.videos import chosen_videos
from lfbtool.detect.outputs import sidecar_path
from lfbtool.detect.run import DetectConfig, detect_in_context
from lfbtool.errors import LfbError, SettingError
from lfbtool.extract._loop import extract_block
from lfbtool.extract._segments import bank_finished, merge_shards, segment_parts, shards_dir
from lfbtool.extract.config import (
    ExtractConfig,
    fingerprint,
    hash_inputs,
    resolved_dict,
    resume_settings,
    settings_of,
)
from lfbtool.extract.detect_agreement import check_against_detect
from lfbtool.extract.outcome import nothing_to_extract, videos_without_keyframes
from lfbtool.models import (
    LFBFeatureModel,
    backbone_spec,
    checkpoint_sha256,
    create_backbone,
    load_backbone_weights,
    read_checkpoint,
)
from lfbtool.runs.naming import check_mode
from lfbtool.runs.parts import PartWriter, RunParts
from lfbtool.runs.scaffold import on_main, run_in_parts
from lfbtool.runtime import distributed as dist
from lfbtool.runtime import resolve_device
from lfbtool.runtime.console import print_warning
from lfbtool.runtime.precision import check_precision, prepare_model
from lfbtool.settings import ExtractSettings, FeatureModel


@dataclass
class ExtractResult:
    """What a run did; printed as the summary by the CLI (rank 0)."""

    output: Path | None
    shards_dir: Path
    videos: int = 0
    keyframes: int = 0
    boxes: int = 0
    extracted_now: int = 0
    loop_seconds: float = 0.0  # slowest rank's extraction loop (first clip requested to last row written)
    merge_seconds: float = 0.0
    resumed: int = 0
    skipped: list[Skipped] = field(default_factory=list)
    identical_duplicates: list[str] = field(default_factory=list)
    size_bytes: int = 0
    world_size: int = 1
    already_complete: bool = False
    precision: str = "fp32"  # the concrete compute precision (--precision auto resolved)
    input_videos: int = 0  # videos the inputs name (videos: those of them in the bank)
    no_keyframe: dict[str, str] = field(default_factory=dict)  # input videos without a keyframe, and why
    parts: int = 0  # --no-merge: shard segments holding the keyframes (no bank yet)
    out: Path | None = None  # OUT and the mode: what `lfbtool merge` is told after --no-merge
    mode: str = "train"
    # boxes each filter dropped (detector_score_threshold, max_per_frame: at the seconds detected now;
    # proposal_score_threshold, max_proposals), and the thresholds that applied
    removed: dict[str, int] = field(default_factory=dict)
    proposal_score_threshold: float | None = None
    score_threshold_from: str = "default"
    detector_score_threshold: float | None = None


def load_keyframes(settings: ExtractSettings, removed: dict[str, int] | None = None,
                   ) -> tuple[list[Keyframe], list[Skipped]]:
    selection = settings.selection
    annotations = read_annotations(selection.annotations) if selection.annotations else None
    excluded = read_excluded(selection.excluded) if selection.excluded else set()
    proposals = read_proposals(selection.proposals) if selection.proposals else None
    keyframes, skipped = build_keyframes(
        source=selection.keyframes, annotations=annotations, excluded=excluded, proposals=proposals,
        score_threshold=selection.proposal_score_threshold, whole_frame_fallback=selection.whole_frame_fallback,
        removed=removed,
    )
    if not keyframes:  # none at all: one line saying why, before anything is written
        listed = set(annotations if selection.keyframes is KeyframeSource.annotated else proposals or {})
        raise nothing_to_extract(_keyframe_source(settings), settings.out, listed=len(listed),
                                 excluded=len(listed & excluded), excluded_path=selection.excluded, skipped=skipped)
    return keyframes, skipped


def _keyframe_source(settings: ExtractSettings) -> object:
    """The file (or, every-second, the directory) the keyframes come from, as messages name it."""
    selection, frames = settings.selection, settings.frames
    return {KeyframeSource.annotated: selection.annotations, KeyframeSource.proposals: selection.proposals}.get(
        selection.keyframes, frames.videos_root or frames.frames_root)


def clip_settings(settings: ExtractSettings) -> ClipSettings:
    frames, clip = settings.frames, settings.clip
    return ClipSettings(
        frames_root=frames.frames_root, videos_root=frames.videos_root, frame_template=frames.frame_template,
        video_ext=frames.video_ext, fps=frames.fps, timestamp_start=frames.timestamp_start,
        start_index=frames.start_index, clip_len=clip.clip_len, frame_interval=clip.frame_interval,
        short_side=clip.short_side,
    )


def build_model(settings: FeatureModel, device: torch.device, *, warn: bool = True,
                ) -> tuple[LFBFeatureModel, Precision]:
    """The feature model on ``device`` and its concrete precision (``auto`` resolved for the device,
    before anything records it); ``warn``: print a slow-bf16 warning."""
    if settings.checkpoint is None:
        raise SettingError("checkpoint", "FILE is needed: the detector backbone whose features go into the bank")
    precision = check_precision(settings.precision, device, warn=print_warning if warn else None)
    backbone = create_backbone(settings.backbone)
    load_backbone_weights(backbone, read_checkpoint(settings.checkpoint), source=str(settings.checkpoint))
    model = LFBFeatureModel(
        backbone, roi_output_size=settings.roi_output_size, roi_temporal_pool=settings.roi_temporal_pool,
        temporal_pool=settings.temporal_pool, spatial_pool=settings.spatial_pool, half=settings.half,
        precision=precision,
    )
    return prepare_model(model.eval().to(device), precision), precision


def persons_path(settings: ExtractSettings) -> Path:
    """Where ``--keyframes every-second`` keeps the persons it detected (MMAction2 proposals pickle)."""
    return settings.out / f"persons_{settings.mode}.pkl"


def detect_persons_first(settings: ExtractSettings, ctx: dist.DistContext, show_progress: bool | None,
                         removed: dict[str, int] | None = None,
                         ) -> tuple[list[Keyframe], list[Skipped], dict[str, Any]]:
    """``--keyframes every-second``: detect persons at every second (resumable, all ranks), then the
    keyframes are the seconds with persons; returns them and the detection settings for provenance.
    Detect gets extract's own sub-configs (detector, frames, clip, run), not copies of their fields."""
    result = detect_in_context(DetectConfig(
        out=persons_path(settings), keyframes=KeyframeSource.every_second, excluded=settings.selection.excluded,
        frames=settings.frames, clip=settings.clip, detector=settings.detector, run=settings.run,
    ), ctx, show_progress, name=settings.mode)
    if removed is not None:
        removed.update(result.removed)
    keyframes, skipped = build_keyframes(
        source=KeyframeSource.every_second, annotations=None, excluded=set(), proposals=read_proposals(result.output),
        seconds=result.keys, score_threshold=settings.selection.proposal_score_threshold,
        whole_frame_fallback=settings.selection.whole_frame_fallback, removed=removed,
    )
    detection = json.loads(sidecar_path(result.output).read_text())["settings"]
    return keyframes, skipped, detection


def run_extract(config: ExtractSettings | ExtractConfig, *, show_progress: bool | None = None) -> ExtractResult:
    """Build ``OUT/lfb_{mode}.h5`` (or only the shards with ``merge=False``). Joins torchrun if launched.
    ``config``: the flat options (parsed here, once) or settings already parsed."""
    settings = config if isinstance(config, ExtractSettings) else settings_of(config)
    ctx = dist.init_from_env(settings.run.dist_timeout)
    lock = RunLock(settings.out, f"lfbtool extract --mode {settings.mode}")  # taken by rank 0 only
    try:
        return _run(settings, ctx, show_progress, lock)
    finally:
        lock.release()
        dist.shutdown(ctx)


def _run(settings: ExtractSettings, ctx: dist.DistContext, show_progress: bool | None,
         lock: RunLock) -> ExtractResult:
    out = settings.out
    inputs: tuple | None = None
    failure: LfbError | None = None
    removed: dict[str, int] = {}
    device = torch.device("cpu")
    try:
        check_mode(settings.mode)
        check_output_path(out, directory=True)
        frames, clip = settings.frames, settings.clip
        check_against_detect(settings.selection.proposals, fps=frames.fps, timestamp_start=frames.timestamp_start,
                             start_index=frames.start_index, clip_len=clip.clip_len,
                             frame_interval=clip.frame_interval)  # a detect sidecar: the frames of its boxes
        device = resolve_device(settings.run.device, ctx.local_rank)
        # Everything the user may have got wrong is checked here, before rank 0 writes into OUT:
        # a refused input must not leave an earlier-run record that asks for --resume.
        settings = hash_inputs(settings)
        model, precision = build_model(settings.model, device, warn=ctx.is_main)
        settings = replace(settings, model=replace(settings.model, precision=precision))  # what ran, never "auto"
        resolved = resolved_dict(settings, checkpoint_sha256(settings.model.checkpoint))
        keyframes, skipped = [], []
        if settings.selection.keyframes is not KeyframeSource.every_second:
            keyframes, skipped = load_keyframes(settings, removed)
        keyframes, outside = keyframes_inside(keyframes, clip_settings(settings))  # unknown or empty videos fail here
        if not keyframes and outside:
            raise nothing_to_extract(_keyframe_source(settings), out, listed=len(skipped) + len(outside),
                                     skipped=skipped + outside)
        inputs = (settings, model, resolved, keyframes,
                  sorted(skipped + outside, key=lambda s: (s.video_id, s.timestamp)))
    except LfbError as error:
        failure = error
    dist.agree(ctx, failure)
    settings, model, resolved, keyframes, skipped = inputs
    run_options, mode = settings.run, settings.mode
    on_main(ctx, lambda: _take_lock(lock), share=False)  # before anything is written into OUT, detections included
    every_second = settings.selection.keyframes is KeyframeSource.every_second
    if every_second:  # seconds with a whole clip: all inside their videos
        keyframes, skipped, resolved["detection"] = detect_persons_first(settings, ctx, show_progress, removed)
        if not keyframes:  # every rank has the same (shared) detections: all raise, each node prints once
            raise nothing_to_extract(_keyframe_source(settings), out, listed=len(skipped), skipped=skipped,
                                     all_ranks=True)
    result = ExtractResult(output=None, shards_dir=shards_dir(out), skipped=skipped, world_size=ctx.world_size,
                           precision=str(settings.model.precision), out=out, mode=mode, removed=removed,
                           proposal_score_threshold=settings.selection.proposal_score_threshold
                           if every_second or settings.selection.proposals is not None else None,
                           score_threshold_from=settings.selection.score_threshold_from,
                           detector_score_threshold=settings.detector.detector_score_threshold if every_second else None)
    result.input_videos, result.no_keyframe = _videos_without_keyframes(settings, keyframes, skipped)
    if show_progress is None:
        show_progress = ctx.is_main and sys.stderr.isatty()
    position = {(k.video_id, k.timestamp): i for i, k in enumerate(keyframes)}
    videos = [k.video_id for k in keyframes]

    def work(mine: list, writer: PartWriter) -> None:  # batches formed from the whole list: see BatchPlan
        plan = plan_batches(videos, [position[key] for key in mine], run_options.batch_size)
        extract_block(model, device, keyframes, plan, clip_settings(settings), writer,
                      num_workers=run_options.num_workers, show_progress=show_progress)

    def assemble(parts: RunParts) -> tuple[MergeReport, float]:
        started = time.perf_counter()
        report = merge_shards(parts.directory, fmt.bank_path(out, mode), mode=mode,
                              keep_shards=run_options.keep_shards)
        return report, time.perf_counter() - started

    bank = fmt.bank_path(out, mode)
    run = run_in_parts(
        ctx, segment_parts(out, mode, _bank_kwargs(settings, resolved)), settings=resume_settings(resolved),
        keys=list(position), work=work, assemble=assemble if run_options.merge else None, resume=run_options.resume,
        overwrite=run_options.overwrite, segment_size=run_options.segment_size,
        final=bank_finished(bank, resume_settings), other_output_hint=lambda names: other_run_advice(mode, bank, names))
    if run.plan.complete:
        header = fmt.read_header(bank)
        return _summarize(result, bank, len(header.videos), header.num_keys, header.num_rows, already_complete=True)
    result.extracted_now, result.loop_seconds, result.resumed = run.produced, run.seconds, run.resumed
    if run.assembled is not None:
        report, result.merge_seconds = run.assembled
        _summarize(result, report.output, report.videos, report.keys, report.rows)
    elif ctx.is_main:  # --no-merge: what the parts hold, and no bank yet
        result.videos, result.keyframes = len({k.video_id for k in keyframes}), len(keyframes)
        result.boxes = sum(len(k.boxes) for k in keyframes)
        result.parts = len(segment_parts(out, mode).finished()[0])
    return result


def _videos_without_keyframes(settings: ExtractSettings, keyframes: list[Keyframe],
                              skipped: list[Skipped]) -> tuple[int, dict[str, str]]:
    """The summary's ``videos N of M``: every-second counts each video it looked at (a video too
    short for one whole clip has no key at all), the other sources the videos of their keys."""
    listed: list[str] = []
    frames = settings.frames
    if settings.selection.keyframes is KeyframeSource.every_second:
        listed = chosen_videos(frames.video_list, frames_root=frames.frames_root, videos_root=frames.videos_root,
                               template=frames.frame_template, video_ext=frames.video_ext)
    return videos_without_keyframes(
        keyframes, skipped, listed,
        no_clip=f"too short for one whole clip of {settings.clip.clip_len} x {settings.clip.frame_interval} frames")


#: Settings that say which data a run reads: when one of these differs, the user most likely forgot --mode.
_INPUT_SETTINGS = ("input_sha256", "keyframes", "detection.keyframes_sha256", "detection.num_keyframes")


def other_run_advice(mode: str, bank: Path, differing: list[str]) -> str:
    """What to do when OUT holds mode ``mode``'s run with other settings (``differing``): other inputs
    are most likely another split, so ``--mode NAME`` comes first and ``--overwrite`` (which replaces
    that mode's bank) only when these inputs were meant for it; other model settings with the same
    inputs are a rebuild of the same mode."""
    example = "val" if mode != "val" else "test"
    inputs = [n for n in differing if n.startswith(_INPUT_SETTINGS)]
    if inputs:
        return (f"if these inputs are another split, give it its own --mode NAME (e.g. --mode {example}: "
                f"lfb_{example}.h5 beside {bank.name}); only if mode {mode}'s inputs were meant to change, "
                f"pass --overwrite (it replaces {bank.name})")
    return (f"to rebuild mode {mode} with these settings pass --overwrite (it replaces {bank.name}); to keep it, "
            "write to another --out")


def _take_lock(lock: RunLock) -> None:
    lock.acquire()
    if lock.note:
        print(f"note: {lock.note}", file=sys.stderr)


def _bank_kwargs(settings: ExtractSettings, resolved: dict[str, Any]) -> dict[str, Any]:
    return {
        "feature_dim": backbone_spec(settings.model.backbone).channels,
        "dtype": "float16" if settings.model.half else "float32", "mode": settings.mode, "config_json": json.dumps(resolved, sort_keys=True),
        "config_fingerprint": fingerprint(resolved), "checkpoint_sha256": resolved["checkpoint_sha256"],
    }


def _summarize(result: ExtractResult, bank: Path, videos: int, keyframes: int, boxes: int, *,
               already_complete: bool = False) -> ExtractResult:
    result.output, result.already_complete = bank, already_complete
    result.videos, result.keyframes, result.boxes = videos, keyframes, boxes
    result.size_bytes = bank.stat().st_size
    return result
