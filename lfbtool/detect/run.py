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
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import torch

from lfbtool._io.atomic import check_output_path
from lfbtool._io.lock import RunLock
from lfbtool.choices import KeyframeSource
from lfbtool.data.ava import read_annotations, read_excluded, read_proposals
from lfbtool.data.clips import ClipSettings
from lfbtool.data.frames import VideoFile
from lfbtool.data.sampling import keyframe_frame_number
from lfbtool.data.videos import chosen_videos, variable_rate_warning, whole_clip_seconds
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
from lfbtool.models.detector import detect_persons, load_detector
from lfbtool.runs.parts import PartWriter, RunParts
from lfbtool.runs.scaffold import run_in_parts
from lfbtool.runtime import distributed as dist
from lfbtool.runtime import resolve_device
from lfbtool.runtime.console import progress_bar
from lfbtool.settings import ClipSampling, DetectorSettings, FrameSource, RunOptions, pick

Key = tuple[str, int]


@dataclass(frozen=True)
class DetectConfig:
    """Every setting of ``lfbtool detect``, parsed; :func:`detect_config` builds it from flat options.
    ``extract --keyframes every-second`` passes its own sub-configs (detector, frames, clip, run)."""

    out: Path
    keyframes: KeyframeSource = KeyframeSource.every_second
    annotations: Path | None = None
    excluded: Path | None = None
    proposals: Path | None = None
    frames: FrameSource = field(default_factory=FrameSource)
    clip: ClipSampling = field(default_factory=ClipSampling)  # which seconds hold a whole clip of the bank
    detector: DetectorSettings = field(default_factory=DetectorSettings)
    run: RunOptions = field(default_factory=RunOptions)
    preview: Path | None = None  # a directory: per video a PNG contact sheet of keyframes with their boxes
    preview_frames: int = 12


_TOP = ("out", "annotations", "excluded", "proposals", "preview", "preview_frames")
_SUB = (FrameSource, ClipSampling, DetectorSettings, RunOptions)


def detect_config(**options: Any) -> DetectConfig:
    """The edge: flat options (the CLI's names; None or absent: the default) parsed once -- keyframe
    source, frame rate, paths -- with the defaults that depend on the source: ``fps`` auto for videos
    with every-second, else 30; ``timestamp_start`` 0 with every-second (own videos), else 900 (AVA)."""
    from lfbtool.data.sampling import parse_fps

    known = set(_TOP) | {"keyframes"} | {f.name for cls in _SUB for f in fields(cls)}
    unknown = sorted(set(options) - known)
    if unknown:
        raise ValueError(f"not detect options: {unknown}")
    given = {name: value for name, value in options.items() if value is not None}
    source = KeyframeSource.parse(given.get("keyframes", KeyframeSource.every_second), "--keyframes")
    own = source is KeyframeSource.every_second
    for name in ("out", "annotations", "excluded", "proposals", "preview", "frames_root", "videos_root",
                 "video_list", "detector_checkpoint"):
        if name in given:
            given[name] = Path(given[name]).expanduser()
    given["fps"] = parse_fps(given.get("fps", "auto" if own and "videos_root" in given else 30))
    given.setdefault("timestamp_start", 0 if own else 900)
    return DetectConfig(keyframes=source, **{name: given[name] for name in _TOP if name in given},
                        frames=pick(FrameSource, given), clip=pick(ClipSampling, given),
                        detector=pick(DetectorSettings, given), run=pick(RunOptions, given))


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
    """Check the settings together (a SettingError names the setting); the config, unchanged."""
    for part in (config.frames, config.clip, config.detector, config.run):
        part.check()
    if config.keyframes is KeyframeSource.annotated and config.annotations is None:
        raise SettingError("keyframes", "annotated needs {1} FILE", also=("annotations",))
    if config.keyframes is KeyframeSource.proposals and config.proposals is None:
        raise SettingError("keyframes", "proposals needs {1} FILE", also=("proposals",))
    output_format(config.out)
    check_output_path(config.out)
    return config


def clip_settings(config: DetectConfig) -> ClipSettings:
    frames = config.frames
    return ClipSettings(
        frames_root=frames.frames_root, videos_root=frames.videos_root, frame_template=frames.frame_template,
        video_ext=frames.video_ext, fps=frames.fps, timestamp_start=int(frames.timestamp_start),
        start_index=frames.start_index, clip_len=config.clip.clip_len, frame_interval=config.clip.frame_interval,
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
        frames = config.frames
        videos = chosen_videos(frames.video_list, frames_root=frames.frames_root, videos_root=frames.videos_root,
                               template=frames.frame_template, video_ext=frames.video_ext)
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
                stride=frames.stride,
            )
            if not seconds:
                warnings.append(f"{source.path}: {source.count_frames()} frames hold no whole clip of "
                                f"{config.clip.clip_len} x {config.clip.frame_interval}; no second of it is used")
            keys.update((video_id, t) for t in seconds)
    return sorted(keys - excluded), warnings


def settings_record(config: DetectConfig, detector: dict[str, Any], keys: list[Key]) -> dict[str, Any]:
    """What decides the output: compared on --resume, written to the sidecar ``<out>.json``."""
    listing = "\n".join(key_text(v, t) for v, t in keys).encode()
    return {
        **detector,  # the sidecar's keys as they always were: old outputs resume
        "score_threshold": config.detector.detector_score_threshold, "max_per_frame": config.detector.max_per_frame,
        "person_label": 1, "keyframes": str(config.keyframes), "stride": config.frames.stride,
        "fps": str(config.frames.fps), "timestamp_start": config.frames.timestamp_start,
        "start_index": config.frames.start_index, "clip_len": config.clip.clip_len,
        "frame_interval": config.clip.frame_interval,
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
    ctx = dist.init_from_env(config.run.dist_timeout)
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
        device = resolve_device(config.run.device, ctx.local_rank)
        keys, result.warnings = keyframe_keys(config)
        chosen = config.detector
        model, source = load_detector(chosen.detector, checkpoint=chosen.detector_checkpoint,
                                      weights=chosen.detector_weights, min_size=chosen.detector_min_size,
                                      max_size=chosen.detector_max_size)
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
            for batch in _batches(_frames(mine, clip_settings(config)), config.run.batch_size):
                found = detect_persons(model, [frame for _, frame in batch], device,
                                       score_threshold=config.detector.detector_score_threshold,
                                       max_per_frame=config.detector.max_per_frame, removed=removed)
                for (key, _), boxes in zip(batch, found, strict=True):
                    writer.append(key, boxes)
                progress.update(task, advance=len(batch))

    def assemble(parts: RunParts) -> Detections:
        detections = assemble_detections(parts, keys)
        write_detections(out, detections, settings)
        parts.remove()
        return detections

    run = run_in_parts(ctx, detect_parts(out, name), settings=settings, keys=keys, work=work, assemble=assemble,
                       resume=config.run.resume, overwrite=config.run.overwrite, segment_size=config.run.segment_size,
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


__all__ = ["DetectConfig", "DetectResult", "detect_config", "detect_in_context", "keyframe_keys", "run_detect"]
