"""``lfbtool detect``: person boxes at chosen seconds of each video -> proposals .pkl / FAIR .csv.

Registered by lfbtool/cli/__init__.py as ``app.command("detect")(detect_command)``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from lfbtool.choices import KeyframeSource
from lfbtool.runtime import is_main_process
from lfbtool.runtime.console import stdout
from lfbtool.settings import ClipSampling, DetectorSettings, FrameSource, RunOptions

_INPUTS = "Inputs"
_MODEL = "Detector"
_RUN = "Run"


def detect_command(
    out: Annotated[Path, typer.Option("--out", "-o", help="Output: .pkl (MMAction2 proposals) or .csv (FAIR 8 columns); sidecar <out>.json.")],
    videos_root: Annotated[Path | None, typer.Option(help="DIR/<video_id>.<ext>, decoded with PyAV.", rich_help_panel=_INPUTS)] = None,
    frames_root: Annotated[Path | None, typer.Option(help="DIR/<video_id>/img_00001.jpg ...", rich_help_panel=_INPUTS)] = None,
    keyframes: Annotated[KeyframeSource, typer.Option(help="every-second (own videos) | annotated (--annotations) | proposals (--proposals).", rich_help_panel=_INPUTS)] = KeyframeSource.every_second,
    stride: Annotated[int, typer.Option(help="every-second: every N-th second from --timestamp-start.", rich_help_panel=_INPUTS)] = FrameSource.stride,
    video_list: Annotated[Path | None, typer.Option(help="Text file of video ids, one a line (default: every video under the root).", rich_help_panel=_INPUTS)] = None,
    annotations: Annotated[Path | None, typer.Option(help="AVA annotation CSV (keyframes annotated).", rich_help_panel=_INPUTS)] = None,
    excluded: Annotated[Path | None, typer.Option(help="Excluded-timestamps CSV.", rich_help_panel=_INPUTS)] = None,
    proposals: Annotated[Path | None, typer.Option(help="Proposals file whose keys to detect on (keyframes proposals).", rich_help_panel=_INPUTS)] = None,
    frame_template: Annotated[str, typer.Option(help="Frame file name template.", rich_help_panel=_INPUTS)] = FrameSource.frame_template,
    video_ext: Annotated[str, typer.Option(help="Video file extension.", rich_help_panel=_INPUTS)] = FrameSource.video_ext,
    fps: Annotated[str | None, typer.Option(help="Frame rate: 30, 29.97, 30000/1001 or auto (the video's own) (default: auto for every-second with videos, else 30).", rich_help_panel=_INPUTS)] = None,
    timestamp_start: Annotated[int | None, typer.Option(help="Second of the first frame (default: 0 for every-second, 900 for AVA inputs).", rich_help_panel=_INPUTS)] = None,
    start_index: Annotated[int, typer.Option(help="Number of the first frame file.", rich_help_panel=_INPUTS)] = FrameSource.start_index,
    clip_len: Annotated[int, typer.Option(help="Clip length of the bank's clips (every-second: which seconds have a whole clip).", rich_help_panel=_INPUTS)] = ClipSampling.clip_len,
    frame_interval: Annotated[int, typer.Option(help="Frame interval of the bank's clips.", rich_help_panel=_INPUTS)] = ClipSampling.frame_interval,
    detector: Annotated[str, typer.Option(help="torchvision detection model name.", rich_help_panel=_MODEL)] = DetectorSettings.detector,
    detector_checkpoint: Annotated[Path | None, typer.Option(help="Detector state_dict file (offline).", rich_help_panel=_MODEL)] = None,
    detector_weights: Annotated[str | None, typer.Option(help="torchvision weights name (DEFAULT, COCO_V1; downloaded).", rich_help_panel=_MODEL)] = None,
    detector_score_threshold: Annotated[float, typer.Option("--detector-score-threshold", "--score-threshold", help="Keep persons scoring at least this (the name extract uses; --score-threshold is the same).", rich_help_panel=_MODEL)] = DetectorSettings.detector_score_threshold,
    max_per_frame: Annotated[int, typer.Option(help="At most this many persons per keyframe (best first).", rich_help_panel=_MODEL)] = DetectorSettings.max_per_frame,
    detector_min_size: Annotated[int | None, typer.Option("--detector-min-size", "--min-size", help="Detector's internal resize, short side (default: the model's own: 320 for the *_320_fpn model, 800 for most; SSD models have a fixed size and take neither option).", rich_help_panel=_MODEL)] = None,
    detector_max_size: Annotated[int | None, typer.Option("--detector-max-size", "--max-size", help="Detector's internal resize, long side at most (default: the model's own: 640 / 1333).", rich_help_panel=_MODEL)] = None,
    batch_size: Annotated[int, typer.Option(help="Keyframes per forward.", rich_help_panel=_RUN)] = RunOptions.batch_size,
    device: Annotated[str, typer.Option(help="auto | cpu | cuda | cuda:N.", rich_help_panel=_RUN)] = RunOptions.device,
    segment_size: Annotated[int, typer.Option(help="Keyframes per crash-safe part.", rich_help_panel=_RUN)] = RunOptions.segment_size,
    resume: Annotated[bool, typer.Option("--resume", help="Continue an interrupted run.", rich_help_panel=_RUN)] = False,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Delete an earlier run's output and parts first.", rich_help_panel=_RUN)] = False,
    dist_timeout: Annotated[int, typer.Option(help="torchrun process-group timeout, seconds.", rich_help_panel=_RUN)] = RunOptions.dist_timeout,
    preview: Annotated[Path | None, typer.Option(help="Also draw DIR/<video_id>.png: evenly spread keyframes with their boxes and scores.", rich_help_panel=_RUN)] = None,
    preview_frames: Annotated[int, typer.Option(min=1, help="Keyframes per video on a --preview sheet.", rich_help_panel=_RUN)] = 12,
) -> None:
    """Detect persons at chosen seconds of each video (one process, or every rank under torchrun)."""
    options = dict(locals())  # every option by its setting name, parsed once by detect_config
    from lfbtool.detect.run import detect_config, run_detect

    if preview is not None:  # an unusable directory is one line now, not after the detection
        from lfbtool.pictures.draw import ensure_directory

        ensure_directory(preview)
    result = run_detect(detect_config(**options))
    if not is_main_process():
        return
    status = "already complete (nothing to do)" if result.already_complete else (
        f"{result.detected_now} detected now, {result.resumed} resumed")
    rows = [("keyframes", f"{result.keyframes} ({status})"), ("with person", str(result.with_persons)),
            ("boxes", str(result.boxes))]
    if result.detected_now and result.loop_seconds > 0:
        rows.append(("throughput", f"{result.detected_now / result.loop_seconds:.2f} keyframes/s"))
    rows.append(("output", str(result.output)))
    if preview is not None:
        rows.append(("preview", f"{preview}/<video_id>.png"))
    if result.world_size > 1:
        rows.append(("processes", str(result.world_size)))
    for name, value in rows:
        stdout.print(f"{name:<12}{value}", markup=False)
