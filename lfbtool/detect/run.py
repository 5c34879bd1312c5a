"""``lfbtool detect``: person boxes at chosen seconds of each video -> a proposals file (.pkl / .csv).

The keyframe image of second ``t`` is the centre frame of its clip, by the clip's own rule
(:func:`lfbtool.data.sampling.keyframe_frame_number`), so the boxes sit on the frame the bank's
features are centred on. One process or many under torchrun: keyframes still to do are split into
contiguous unpadded blocks; each rank writes crash-safe segments under ``<out>.parts/``; rank 0
writes the sidecar ``<out>.json`` and then the output (both atomically) and removes the parts.
"""

from __future__ import annotations

import hashlib
import sys
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import torch

from lfbtool._io.lock import RunLock
from lfbtool.choices import KeyframeSource
from lfbtool.data.ava import read_annotations, read_excluded, read_proposals
from lfbtool.data.clips import ClipSettings
from lfbtool.data.frames import VideoFile
from lfbtool.data.sampling import keyframe_frame_number
from lfbtool.data.videos import list_videos, read_video_list, variable_rate_warning, whole_clip_seconds
from lfbtool.detect.outputs import (
    Detections,
    assemble_detections,
    detect_parts,
    detections_finished,
    output_format,
    write_detections,
)
from lfbtool.errors import LfbError, SettingError
from lfbtool.keys import key_text
from lfbtool.models.detector import DEFAULT_DETECTOR, detect_persons, load_detector
from lfbtool.runs.parts import PartWriter, RunParts
from lfbtool.runs.scaffold import run_in_parts
from lfbtool.runtime import distributed as dist
from lfbtool.runtime import resolve_device
from lfbtool.runtime.console import progress_bar

Key = tuple[str, int]


@dataclass
class DetectConfig:
    """Every option of ``lfbtool detect``."""

    out: Path
    detector: str = DEFAULT_DETECTOR
    detector_checkpoint: Path | None = None
    detector_weights: str | None = None
    score_threshold: float = 0.5
    max_per_frame: int = 100
    min_size: int | None = None  # the detector's internal resize; None: the model's own (as torchvision defines it)
    max_size: int | None = None
    keyframes: str = "every-second"
    annotations: Path | None = None
    excluded: Path | None = None
    proposals: Path | None = None
    video_list: Path | None = None
    stride: int = 1
    frames_root: Path | None = None
    videos_root: Path | None = None
    frame_template: str = "img_{:05d}.jpg"
    video_ext: str = "mp4"
    fps: int | Fraction | str | None = None  # None: "auto" for videos with every-second, else 30
    timestamp_start: int | None = None  # None: 0 with every-second (own videos), else 900 (AVA)
    start_index: int = 1
    clip_len: int = 4
    frame_interval: int = 16
    batch_size: int = 1
    device: str = "auto"
    segment_size: int = 64
    resume: bool = False
    overwrite: bool = False
    dist_timeout: int = 1800
    preview: Path | None = None  # a directory: per video a PNG contact sheet of keyframes with their boxes
    preview_frames: int = 12


@dataclass
class DetectResult:
    output: Path
    keyframes: int = 0
    with_persons: int = 0
    boxes: int = 0
    detected_now: int = 0
    resumed: int = 0
    loop_seconds: float = 0.0
    world_size: int = 1
    already_complete: bool = False
    warnings: list[str] = field(default_factory=list)
    # persons each filter dropped at the keyframes detected now, all ranks: detector_score_threshold, max_per_frame
    removed: dict[str, int] = field(default_factory=dict)
    keys: list[Key] = field(default_factory=list)  # every keyframe detected on, with or without persons


def resolve_defaults(config: DetectConfig) -> DetectConfig:
    """Fill the source-dependent defaults and check the options (LfbError naming the option)."""
    source = KeyframeSource.parse(config.keyframes, "--keyframes")
    own = source == KeyframeSource.every_second
    if config.fps is None:
        config.fps = "auto" if own and config.videos_root is not None else 30
    if config.timestamp_start is None:
        config.timestamp_start = 0 if own else 900
    if config.frames_root is None and config.videos_root is None:
        raise LfbError("give --videos-root DIR or --frames-root DIR (where the frames come from)")
    if not 0.0 <= config.score_threshold <= 1.0:
        raise SettingError("detector_score_threshold", f"must be in [0, 1], got {config.score_threshold}")
    settings = {"min_size": "detector_min_size", "max_size": "detector_max_size"}  # the names extract uses
    for name in ("max_per_frame", "min_size", "max_size", "stride", "clip_len", "frame_interval", "batch_size",
                 "segment_size"):
        value = getattr(config, name)
        if value is not None and int(value) < 1:
            raise SettingError(settings.get(name, name), f"must be >= 1, got {value}")
    if source == KeyframeSource.annotated and config.annotations is None:
        raise LfbError("--keyframes annotated needs --annotations FILE")
    if source == KeyframeSource.proposals and config.proposals is None:
        raise LfbError("--keyframes proposals needs --proposals FILE")
    if config.resume and config.overwrite:
        raise LfbError("--resume and --overwrite exclude each other")
    output_format(config.out)
    return config


def clip_settings(config: DetectConfig) -> ClipSettings:
    return ClipSettings(
        frames_root=config.frames_root, videos_root=config.videos_root, frame_template=config.frame_template,
        video_ext=config.video_ext, fps=config.fps, timestamp_start=int(config.timestamp_start),
        start_index=config.start_index, clip_len=config.clip_len, frame_interval=config.frame_interval,
        short_side=1,  # unused: detection reads full frames
    )


def keyframe_keys(config: DetectConfig) -> tuple[list[Key], list[str]]:
    """The (video, second) keys to detect on, sorted, and warnings (variable frame rates)."""
    excluded = read_excluded(config.excluded) if config.excluded else set()
    settings = clip_settings(config)
    warnings: list[str] = []
    if config.keyframes in (KeyframeSource.annotated, KeyframeSource.proposals):
        found = read_annotations(config.annotations) if config.keyframes == KeyframeSource.annotated else (
            read_proposals(config.proposals))
        keys = set(found)
        for video_id in sorted({video_id for video_id, _ in keys}):
            settings.fps_of(settings.open(video_id))  # unknown video or no rate: fail before any work
    else:
        if config.video_list is not None:
            videos = read_video_list(config.video_list)
        else:
            videos = list_videos(frames_root=config.frames_root, videos_root=config.videos_root,
                                 template=config.frame_template, video_ext=config.video_ext)
        keys = set()
        for video_id in videos:
            source = settings.open(video_id)
            if isinstance(source, VideoFile):
                warning = variable_rate_warning(source.path)
                if warning:
                    warnings.append(warning)
            if source.count_frames() < 1:
                raise LfbError(f"{source.path}: video {video_id} has no frames")
            seconds = whole_clip_seconds(
                source.count_frames(), fps=settings.fps_of(source), timestamp_start=settings.timestamp_start,
                start_index=settings.start_index, clip_len=settings.clip_len, interval=settings.frame_interval,
                stride=config.stride,
            )
            if not seconds:
                warnings.append(f"{source.path}: {source.count_frames()} frames hold no whole clip of "
                                f"{config.clip_len} x {config.frame_interval}; no second of it is used")
            keys.update((video_id, t) for t in seconds)
    return sorted(keys - excluded), warnings


def settings_record(config: DetectConfig, detector: dict[str, Any], keys: list[Key]) -> dict[str, Any]:
    """What decides the output: compared on --resume, written to the sidecar ``<out>.json``."""
    listing = "\n".join(key_text(v, t) for v, t in keys).encode()
    return {
        **detector,
        "score_threshold": config.score_threshold, "max_per_frame": config.max_per_frame,
        "person_label": 1, "keyframes": str(config.keyframes), "stride": config.stride,
        "fps": str(config.fps), "timestamp_start": config.timestamp_start, "start_index": config.start_index,
        "clip_len": config.clip_len, "frame_interval": config.frame_interval,
        "keyframes_sha256": hashlib.sha256(listing).hexdigest(), "num_keyframes": len(keys),
    }


def _frames(todo: list[Key], settings: ClipSettings, max_open: int = 4):
    """Yield ``(key, uint8 [H, W, 3] keyframe image)`` in order, keeping a few videos open."""
    open_sources: dict[str, Any] = {}
    for video_id, timestamp in todo:
        source = open_sources.pop(video_id, None) or settings.open(video_id)
        open_sources[video_id] = source
        if len(open_sources) > max_open:
            old = open_sources.pop(next(iter(open_sources)))
            getattr(old, "close", lambda: None)()
        number = keyframe_frame_number(timestamp, fps=settings.fps_of(source), timestamp_start=settings.timestamp_start,
                                       start_index=settings.start_index, total=source.count_frames())
        try:
            frame = source.read([number])[0]
        except LfbError as error:
            raise LfbError(f"{error} (keyframe {key_text(video_id, timestamp)})", exit_code=error.exit_code) from None
        yield (video_id, timestamp), frame


def _batches(frames, batch_size: int):
    """Consecutive keyframes of one image size, at most ``batch_size`` (sizes cannot mix in a batch)."""
    pending: list[tuple[Key, torch.Tensor]] = []
    for item in frames:
        if pending and (len(pending) >= batch_size or pending[0][1].shape != item[1].shape):
            yield pending
            pending = []
        pending.append(item)
    if pending:
        yield pending


def run_detect(config: DetectConfig, *, show_progress: bool | None = None) -> DetectResult:
    """Detect persons at every keyframe and write ``config.out``. Joins torchrun if launched; rank 0
    holds the lock ``.<out name>.lock`` beside the output while the run goes on."""
    ctx = dist.init_from_env(config.dist_timeout)
    out = Path(config.out)
    try:
        result = detect_in_context(config, ctx, show_progress,
                                   lock=RunLock(out.parent, f"lfbtool detect --out {out}", name=f".{out.name}.lock"))
        if config.preview is not None and ctx.is_main:  # after the output is written, fresh or complete
            from lfbtool.pictures import write_previews

            write_previews(result.output, result.keys, clip_settings(config), config.preview, config.preview_frames)
        return result
    finally:
        dist.shutdown(ctx)


def detect_in_context(config: DetectConfig, ctx: dist.DistContext, show_progress: bool | None = None, *,
                      name: str = "detect", lock: RunLock | None = None) -> DetectResult:
    """:func:`run_detect` inside a process group someone else joined and will leave (``extract``
    detecting first, then extracting, under its own lock; ``name``: its mode, which names the parts):
    every rank calls it; the output is on disk when it returns."""
    config = resolve_defaults(config)
    out = Path(config.out)
    result = DetectResult(output=out, world_size=ctx.world_size)
    failure, prepared = None, None
    try:  # everything the user may have got wrong, before anything is written
        device = resolve_device(config.device, ctx.local_rank)
        keys, result.warnings = keyframe_keys(config)
        model, source = load_detector(config.detector, checkpoint=config.detector_checkpoint,
                                      weights=config.detector_weights, min_size=config.min_size,
                                      max_size=config.max_size)
        model = model.to(device)
        settings = settings_record(config, source.record(), keys)
        prepared = (keys, settings)
    except LfbError as error:
        failure = error
    dist.agree(ctx, failure)
    keys, settings = prepared
    result.keys, result.keyframes = keys, len(keys)
    if ctx.is_main:
        for warning in result.warnings:  # before the long part, where the user sees it
            sys.stderr.write(f"warning: {warning}\n")
    if show_progress is None:
        show_progress = ctx.is_main and sys.stderr.isatty()

    removed: dict[str, int] = {}

    def work(mine: list[Key], writer: PartWriter) -> None:
        with progress_bar("detecting", show_progress) as progress:
            task = progress.add_task("detect", total=len(mine), rate="")
            for batch in _batches(_frames(mine, clip_settings(config)), config.batch_size):
                found = detect_persons(model, [frame for _, frame in batch], device,
                                       score_threshold=config.score_threshold, max_per_frame=config.max_per_frame,
                                       removed=removed)
                for (key, _), boxes in zip(batch, found, strict=True):
                    writer.append(key, boxes)
                progress.update(task, advance=len(batch))

    def assemble(parts: RunParts) -> Detections:
        detections = assemble_detections(parts, keys)
        write_detections(out, detections, settings)
        parts.remove()
        return detections

    run = run_in_parts(ctx, detect_parts(out, name), settings=settings, keys=keys, work=work, assemble=assemble,
                       resume=config.resume, overwrite=config.overwrite, segment_size=config.segment_size,
                       final=detections_finished(out), lock=lock)
    result.detected_now, result.loop_seconds, result.resumed = run.produced, run.seconds, run.resumed
    if not run.plan.complete:
        for counts in dist.all_gather(ctx, removed):
            for name, count in counts.items():
                result.removed[name] = result.removed.get(name, 0) + count
    if run.plan.complete:
        result.already_complete = True
        _count(result, Detections.read(out))
    elif run.assembled is not None:
        _count(result, run.assembled)
    return result


def _count(result: DetectResult, detections: Detections) -> None:
    result.with_persons = sum(1 for boxes in detections.boxes.values() if len(boxes))
    result.boxes = int(sum(len(boxes) for boxes in detections.boxes.values()))


__all__ = ["DetectConfig", "DetectResult", "detect_in_context", "keyframe_keys", "run_detect"]
