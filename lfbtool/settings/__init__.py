"""Typed settings, parsed once at the edge: small frozen dataclasses, one per concern.

The CLI and the TOML file read flat options (``--clip-len``, ``clip-len = 4``); the options layer
(:mod:`lfbtool.extract.config`, :mod:`lfbtool.cli.detect_cmd`) parses them once -- enums are enums,
paths are :class:`~pathlib.Path`, ``fps`` is a number or ``"auto"``, defaults that depend on other
options are filled -- and builds these. Below that edge the library takes them as they are.

A field has the name of its flat option (``detector_score_threshold`` is ``--detector-score-threshold``
and the TOML key ``detector-score-threshold``), so :func:`project` picks a sub-config out of any flat
options object by name -- ``extract`` hands ``detect`` its detector settings without copying fields by
hand -- and errors name settings (:class:`~lfbtool.errors.SettingError`) that the CLI maps to its flags
in one place (:mod:`lfbtool.cli.options`).

Torch-free and numpy-free: the CLI builds them before any model loads.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any, Literal, TypeVar

from lfbtool.choices import KeyframeSource, Pool, Precision
from lfbtool.errors import SettingError

__all__ = ["ClipSampling", "DetectorSettings", "ExtractSettings", "FeatureModel", "FrameSource", "KeyframeSelection",
           "RunOptions",
           "flatten", "pick", "project"]

#: The detector ``extract --keyframes every-second`` and ``detect`` use unless told otherwise.
DEFAULT_DETECTOR = "fasterrcnn_resnet50_fpn_v2"

S = TypeVar("S")


def project(cls: type[S], options: Any) -> S:
    """The sub-config ``cls`` of a flat options object or mapping, field by field, by name."""
    get = options.get if isinstance(options, Mapping) else lambda name: getattr(options, name)
    return cls(**{item.name: get(item.name) for item in dataclasses.fields(cls)})  # type: ignore[arg-type]


def pick(cls: type[S], options: Mapping[str, Any]) -> S:
    """The sub-config ``cls`` of the flat ``options`` that were given (None: the field's default)."""
    return cls(**{item.name: options[item.name] for item in dataclasses.fields(cls)  # type: ignore[arg-type]
                  if options.get(item.name) is not None})


def flatten(*parts: Any) -> dict[str, Any]:
    """The flat options of several sub-configs (their field names never overlap): what a record holds."""
    flat: dict[str, Any] = {}
    for part in parts:
        for item in dataclasses.fields(part):
            flat[item.name] = getattr(part, item.name)
    return flat


def _positive(settings: Any, *names: str, may_be_none: tuple[str, ...] = ()) -> None:
    for name in names:
        value = getattr(settings, name)
        if value is None and name in may_be_none:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise SettingError(name, f"must be a positive integer, got {value!r}")


def _fraction(settings: Any, name: str) -> None:
    value = getattr(settings, name)
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0.0 <= value <= 1.0:
        raise SettingError(name, f"must be in [0, 1], got {value!r}")


@dataclass(frozen=True)
class FrameSource:
    """Where the frames come from and how seconds map to frames."""

    frames_root: Path | None = None
    videos_root: Path | None = None
    frame_template: str = "img_{:05d}.jpg"
    video_ext: str = "mp4"
    fps: int | Fraction | Literal["auto"] = 30  # "auto": each video file's own rate
    timestamp_start: int = 0
    start_index: int = 1
    video_list: Path | None = None  # every-second: the videos to use (default: all under the root)
    stride: int = 1  # every-second: every Nth second

    def check(self) -> FrameSource:
        _positive(self, "stride")
        if self.frames_root is None and self.videos_root is None:
            raise SettingError("frames_root", "DIR or {1} DIR: give one (where the frames come from)",
                               also=("videos_root",))
        if self.frames_root is not None and self.videos_root is not None:
            raise SettingError("frames_root", "and {1}: give only one of them", also=("videos_root",))
        if self.fps == "auto" and self.videos_root is None:
            raise SettingError("fps", "auto reads each video file's rate: give {1}, or a number for frame "
                               "directories", also=("videos_root",))
        return self


@dataclass(frozen=True)
class ClipSampling:
    """The clip around each keyframe: ``clip_len`` frames ``frame_interval`` apart, short side resized."""

    clip_len: int = 4
    frame_interval: int = 16
    short_side: int = 256

    def check(self) -> ClipSampling:
        _positive(self, "clip_len", "frame_interval", "short_side")
        return self


@dataclass(frozen=True)
class DetectorSettings:
    """The person detector, shared by ``detect`` and ``extract --keyframes every-second``."""

    detector: str = DEFAULT_DETECTOR
    detector_checkpoint: Path | None = None
    detector_weights: str | None = None
    detector_score_threshold: float = 0.5
    max_per_frame: int = 100
    detector_min_size: int | None = None  # None: the model's own resize, as torchvision defines it
    detector_max_size: int | None = None

    def check(self) -> DetectorSettings:
        _fraction(self, "detector_score_threshold")
        _positive(self, "max_per_frame", "detector_min_size", "detector_max_size",
                  may_be_none=("detector_min_size", "detector_max_size"))
        return self


@dataclass(frozen=True)
class KeyframeSelection:
    """Which keyframes and boxes go into a bank. ``proposal_score_threshold`` is the proposal filter
    (recorded as ``score_threshold``); ``score_threshold_from`` says where it came from: ``option``,
    ``default`` (0.9, MMAction2's), or ``detector`` (the detector's own, so every box it kept stays)."""

    keyframes: KeyframeSource = KeyframeSource.annotated
    annotations: Path | None = None
    excluded: Path | None = None
    proposals: Path | None = None
    proposal_score_threshold: float = 0.9
    score_threshold_from: str = "default"
    whole_frame_fallback: bool = False

    def check(self) -> KeyframeSelection:
        _fraction(self, "proposal_score_threshold")
        return self


@dataclass(frozen=True)
class FeatureModel:
    """The backbone and the LFB head that turn a clip and its boxes into features."""

    backbone: str = "slowonly_r50"
    checkpoint: Path | None = None
    roi_output_size: int = 8
    roi_temporal_pool: Pool = Pool.avg
    temporal_pool: Pool = Pool.avg
    spatial_pool: Pool = Pool.max
    half: bool = True
    precision: Precision = Precision.fp32

    def check(self) -> FeatureModel:
        _positive(self, "roi_output_size")
        return self


@dataclass(frozen=True)
class RunOptions:
    """How a run goes, not what it computes: never part of a fingerprint."""

    batch_size: int = 1
    num_workers: int | None = None  # None: auto_workers() picks for the device
    device: str = "auto"
    segment_size: int = 64
    merge: bool = True
    keep_shards: bool = False
    resume: bool = False
    overwrite: bool = False
    dist_timeout: int = 1800

    def check(self) -> RunOptions:
        _positive(self, "batch_size", "segment_size", "dist_timeout")
        if self.num_workers is not None and (isinstance(self.num_workers, bool) or not isinstance(
                self.num_workers, int) or self.num_workers < 0):
            raise SettingError("num_workers", f"must be 0 or more, got {self.num_workers!r}")
        if self.resume and self.overwrite:
            raise SettingError("resume", "and {1} exclude each other", also=("overwrite",))
        return self


@dataclass(frozen=True)
class ExtractSettings:
    """Everything ``extract`` runs with, parsed: built once from the flat options
    (:func:`lfbtool.extract.config.settings_of`), never changed after. ``input_sha256``: the content
    hashes of the annotation, excluded and proposal files (what the bank records)."""

    mode: str
    out: Path
    selection: KeyframeSelection
    frames: FrameSource
    clip: ClipSampling
    detector: DetectorSettings
    model: FeatureModel
    run: RunOptions
    input_sha256: Mapping[str, str] = dataclasses.field(default_factory=dict)

    def check(self) -> ExtractSettings:
        for part in (self.selection, self.frames, self.clip, self.detector, self.model, self.run):
            part.check()
        return self

    def flat(self) -> dict[str, Any]:
        """The flat options (the TOML/CLI names) with their parsed values."""
        return {"mode": self.mode, "out": self.out, **flatten(self.selection, self.frames, self.clip, self.detector,
                                                              self.model, self.run),
                "input_sha256": dict(self.input_sha256)}
