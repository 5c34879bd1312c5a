"""The extraction run: keyframes -> clips (workers) -> model (batched) -> shard segments -> merged bank.

One process or many under torchrun: keyframes still to do are split into contiguous, unpadded blocks,
one per rank; each rank writes its own segments; rank 0 merges after a barrier. ``--resume`` treats
every keyframe stored in a complete segment as done, whatever the number of ranks that wrote it.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from lfbtool._io.lock import RunLock
from lfbtool.bank import format as fmt
from lfbtool.bank.merge import MergeReport
from lfbtool.choices import KeyframeSource
from lfbtool.data.ava import (
    Keyframe,
    Skipped,
    build_keyframes,
    read_annotations,
    read_excluded,
    read_proposals,
)
from lfbtool.data.clips import ClipSettings, keyframes_inside
from lfbtool.detect.outputs import sidecar_path
from lfbtool.detect.run import DetectConfig, detect_in_context
from lfbtool.errors import LfbError
from lfbtool.extract._loop import extract_block
from lfbtool.extract._segments import bank_finished, merge_shards, segment_parts, shards_dir
from lfbtool.extract.config import ExtractConfig, fingerprint, hash_inputs, resolved_dict, resume_settings
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
    # boxes each filter dropped (detector_score_threshold, max_per_frame: at the seconds detected now;
    # proposal_score_threshold, max_proposals), and the thresholds that applied
    removed: dict[str, int] = field(default_factory=dict)
    proposal_score_threshold: float | None = None
    score_threshold_from: str = "default"
    detector_score_threshold: float | None = None


def load_keyframes(config: ExtractConfig, removed: dict[str, int] | None = None,
                   ) -> tuple[list[Keyframe], list[Skipped]]:
    annotations = read_annotations(config.annotations) if config.annotations else None
    excluded = read_excluded(config.excluded) if config.excluded else set()
    proposals = read_proposals(config.proposals) if config.proposals else None
    return build_keyframes(
        source=config.keyframes, annotations=annotations, excluded=excluded, proposals=proposals,
        score_threshold=_proposal_threshold(config), whole_frame_fallback=config.whole_frame_fallback,
        removed=removed,
    )


def _proposal_threshold(config: ExtractConfig) -> float:
    if config.proposal_score_threshold is None:
        raise LfbError("proposal_score_threshold is not resolved: build the config with build_config()")
    return config.proposal_score_threshold


def clip_settings(config: ExtractConfig) -> ClipSettings:
    return ClipSettings(
        frames_root=config.frames_root, videos_root=config.videos_root, frame_template=config.frame_template,
        video_ext=config.video_ext, fps=config.fps, timestamp_start=config.timestamp_start,
        start_index=config.start_index, clip_len=config.clip_len, frame_interval=config.frame_interval,
        short_side=config.short_side,
    )


def build_model(config: ExtractConfig, device: torch.device, *, warn: bool = True) -> LFBFeatureModel:
    """The feature model on ``device``. ``config.precision`` becomes the concrete precision here
    (``auto`` resolved for the device) before anything records it; ``warn``: print a slow-bf16 warning."""
    if config.checkpoint is None:
        raise LfbError("--checkpoint FILE is needed: the detector backbone whose features go into the bank")
    precision = check_precision(config.precision, device, warn=print_warning if warn else None)
    config.precision = precision
    backbone = create_backbone(config.backbone)
    load_backbone_weights(backbone, read_checkpoint(config.checkpoint), source=str(config.checkpoint))
    model = LFBFeatureModel(
        backbone, roi_output_size=config.roi_output_size, roi_temporal_pool=config.roi_temporal_pool,
        temporal_pool=config.temporal_pool, spatial_pool=config.spatial_pool, half=config.half,
        precision=precision,
    )
    return prepare_model(model.eval().to(device), precision)


def persons_path(config: ExtractConfig) -> Path:
    """Where ``--keyframes every-second`` keeps the persons it detected (MMAction2 proposals pickle)."""
    return Path(config.out) / f"persons_{config.mode}.pkl"


def detect_persons_first(config: ExtractConfig, ctx: dist.DistContext, show_progress: bool | None,
                         removed: dict[str, int] | None = None,
                         ) -> tuple[list[Keyframe], list[Skipped], dict[str, Any]]:
    """``--keyframes every-second``: detect persons at every second (resumable, all ranks), then the
    keyframes are the seconds with persons; returns them and the detection settings for provenance."""
    result = detect_in_context(DetectConfig(
        out=persons_path(config), detector=config.detector, detector_checkpoint=config.detector_checkpoint,
        detector_weights=config.detector_weights, score_threshold=config.detector_score_threshold,
        max_per_frame=config.max_per_frame, min_size=config.detector_min_size, max_size=config.detector_max_size,
        keyframes=KeyframeSource.every_second, excluded=config.excluded, video_list=config.video_list,
        stride=config.stride, frames_root=config.frames_root, videos_root=config.videos_root,
        frame_template=config.frame_template, video_ext=config.video_ext, fps=config.fps,
        timestamp_start=config.timestamp_start, start_index=config.start_index, clip_len=config.clip_len,
        frame_interval=config.frame_interval, batch_size=config.batch_size, device=config.device,
        segment_size=config.segment_size, resume=config.resume, overwrite=config.overwrite,
        dist_timeout=config.dist_timeout,
    ), ctx, show_progress, name=config.mode)
    if removed is not None:
        removed.update(result.removed)
    keyframes, skipped = build_keyframes(
        source=KeyframeSource.every_second, annotations=None, excluded=set(), proposals=read_proposals(result.output),
        seconds=result.keys, score_threshold=_proposal_threshold(config),
        whole_frame_fallback=config.whole_frame_fallback, removed=removed,
    )
    detection = json.loads(sidecar_path(result.output).read_text())["settings"]
    return keyframes, skipped, detection


def run_extract(config: ExtractConfig, *, show_progress: bool | None = None) -> ExtractResult:
    """Build ``OUT/lfb_{mode}.h5`` (or only the shards with ``merge=False``). Joins torchrun if launched."""
    ctx = dist.init_from_env(config.dist_timeout)
    lock = RunLock(config.out, f"lfbtool extract --mode {config.mode}")  # taken by rank 0 only
    try:
        return _run(config, ctx, show_progress, lock)
    finally:
        lock.release()
        dist.shutdown(ctx)


def _run(config: ExtractConfig, ctx: dist.DistContext, show_progress: bool | None, lock: RunLock) -> ExtractResult:
    out = Path(config.out)
    inputs: tuple | None = None
    failure: LfbError | None = None
    removed: dict[str, int] = {}
    device = torch.device("cpu")
    try:
        check_mode(config.mode)
        device = resolve_device(config.device, ctx.local_rank)
        # Everything the user may have got wrong is checked here, before rank 0 writes into OUT:
        # a refused input must not leave an earlier-run record that asks for --resume.
        hash_inputs(config)
        model = build_model(config, device, warn=ctx.is_main)
        resolved = resolved_dict(config, checkpoint_sha256(config.checkpoint))
        keyframes, skipped = [], []
        if config.keyframes is not KeyframeSource.every_second:
            keyframes, skipped = load_keyframes(config, removed)
        keyframes, outside = keyframes_inside(keyframes, clip_settings(config))  # unknown or empty videos fail here
        inputs = (resolved, keyframes, sorted(skipped + outside, key=lambda s: (s.video_id, s.timestamp)))
    except LfbError as error:
        failure = error
    dist.agree(ctx, failure)
    resolved, keyframes, skipped = inputs
    on_main(ctx, lambda: _take_lock(lock), share=False)  # before anything is written into OUT, detections included
    if config.keyframes is KeyframeSource.every_second:  # seconds with a whole clip: all inside their videos
        keyframes, skipped, resolved["detection"] = detect_persons_first(config, ctx, show_progress, removed)
    result = ExtractResult(output=None, shards_dir=shards_dir(out), skipped=skipped, world_size=ctx.world_size,
                           precision=str(config.precision), removed=removed,
                           proposal_score_threshold=config.proposal_score_threshold,
                           score_threshold_from=config.score_threshold_from)
    if config.keyframes is KeyframeSource.every_second:
        result.detector_score_threshold = config.detector_score_threshold
    if show_progress is None:
        show_progress = ctx.is_main and sys.stderr.isatty()
    by_key = {(k.video_id, k.timestamp): k for k in keyframes}

    def work(mine: list, writer: PartWriter) -> None:
        extract_block(model, device, [by_key[key] for key in mine], clip_settings(config), writer,
                      batch_size=config.batch_size, num_workers=config.num_workers, show_progress=show_progress)

    def assemble(parts: RunParts) -> tuple[MergeReport, float]:
        started = time.perf_counter()
        report = merge_shards(parts.directory, fmt.bank_path(out, config.mode), mode=config.mode,
                              keep_shards=config.keep_shards)
        return report, time.perf_counter() - started

    bank = fmt.bank_path(out, config.mode)
    run = run_in_parts(
        ctx, segment_parts(out, config.mode, _bank_kwargs(config, resolved)), settings=resume_settings(resolved),
        keys=list(by_key), work=work, assemble=assemble if config.merge else None, resume=config.resume,
        overwrite=config.overwrite, segment_size=config.segment_size, final=bank_finished(bank, resume_settings),
        other_output_hint=lambda names: other_run_advice(config.mode, bank, names))
    if run.plan.complete:
        header = fmt.read_header(bank)
        return _summarize(result, bank, len(header.videos), header.num_keys, header.num_rows, already_complete=True)
    result.extracted_now, result.loop_seconds, result.resumed = run.produced, run.seconds, run.resumed
    if run.assembled is not None:
        report, result.merge_seconds = run.assembled
        _summarize(result, report.output, report.videos, report.keys, report.rows)
    return result


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


def _bank_kwargs(config: ExtractConfig, resolved: dict[str, Any]) -> dict[str, Any]:
    return {
        "feature_dim": backbone_spec(config.backbone).channels, "dtype": "float16" if config.half else "float32",
        "mode": config.mode, "config_json": json.dumps(resolved, sort_keys=True),
        "config_fingerprint": fingerprint(resolved), "checkpoint_sha256": resolved["checkpoint_sha256"],
    }


def _summarize(result: ExtractResult, bank: Path, videos: int, keyframes: int, boxes: int, *,
               already_complete: bool = False) -> ExtractResult:
    result.output, result.already_complete = bank, already_complete
    result.videos, result.keyframes, result.boxes = videos, keyframes, boxes
    result.size_bytes = bank.stat().st_size
    return result
