"""Extract's flat options layer: defaults <- TOML file <- command-line options, resolved once into the
frozen :class:`~lfbtool.settings.ExtractSettings` (:func:`settings_of`), and the bank's fingerprint.

The fingerprint covers exactly the settings that change what lands in the bank (inputs, sampling,
model, pooling, precision) and not how the run goes (workers, batch size, device, paths), so a resume
on other machines with other paths is accepted while a resume with another clip length is not.
"""

from __future__ import annotations

import dataclasses
import string
from dataclasses import dataclass, fields
from fractions import Fraction
from pathlib import Path
from typing import Any

import tomllib

from lfbtool._io.hashing import file_sha256
from lfbtool.choices import KeyframeSource, Pool, Precision
from lfbtool.errors import LfbError, SettingError
from lfbtool.runs.naming import check_mode
from lfbtool.runs.settings import fingerprint as settings_fingerprint
from lfbtool.settings import (
    ClipSampling,
    DetectorSettings,
    ExtractSettings,
    FeatureModel,
    FrameSource,
    KeyframeSelection,
    RunOptions,
    project,
)

#: The proposal filter when the proposals are not a detector's output (MMAction2's AVA default).
DEFAULT_PROPOSAL_SCORE_THRESHOLD = KeyframeSelection.proposal_score_threshold


@dataclass
class ExtractConfig:
    """Every option of ``lfbtool extract``; the CLI and the TOML file set the same names. A default is
    the typed setting's (``lfbtool.settings``), read from there; None marks a default that depends on
    other options and is resolved by :func:`build_config`.

    ``clip_len`` / ``frame_interval`` left as None take the backbone's default AVA clip
    (``BackboneSpec.extract_clip``) when the config is built.
    """

    mode: str = "train"
    out: Path = Path("lfb")
    # inputs
    keyframes: KeyframeSource = KeyframeSelection.keyframes
    annotations: Path | None = None
    excluded: Path | None = None
    proposals: Path | None = None
    # None: keep what the detector kept (every-second, or a `detect` output per its sidecar), else 0.9.
    # Recorded in a bank's config as ``score_threshold`` (the name it always had).
    proposal_score_threshold: float | None = None
    whole_frame_fallback: bool = KeyframeSelection.whole_frame_fallback
    frames_root: Path | None = None
    videos_root: Path | None = None
    frame_template: str = FrameSource.frame_template
    video_ext: str = FrameSource.video_ext
    fps: int | Fraction | str | None = None  # None: "auto" for every-second on videos, else 30
    timestamp_start: int | None = None  # None: 0 for every-second (own videos), else 900 (AVA)
    start_index: int = FrameSource.start_index
    video_list: Path | None = None
    stride: int = FrameSource.stride
    # person detection (keyframes every-second)
    detector: str = DetectorSettings.detector
    detector_checkpoint: Path | None = None
    detector_weights: str | None = None
    detector_score_threshold: float = DetectorSettings.detector_score_threshold
    max_per_frame: int = DetectorSettings.max_per_frame
    detector_min_size: int | None = None  # None: the detector's own resize, as torchvision defines the model
    detector_max_size: int | None = None
    # model
    backbone: str = FeatureModel.backbone
    checkpoint: Path | None = None
    clip_len: int | None = None
    frame_interval: int | None = None
    short_side: int = ClipSampling.short_side
    roi_output_size: int = FeatureModel.roi_output_size
    roi_temporal_pool: Pool = FeatureModel.roi_temporal_pool
    temporal_pool: Pool = FeatureModel.temporal_pool
    spatial_pool: Pool = FeatureModel.spatial_pool
    half: bool = FeatureModel.half
    precision: Precision = FeatureModel.precision
    # run
    batch_size: int = RunOptions.batch_size
    num_workers: int | None = None  # None: auto_workers() picks for the device
    device: str = RunOptions.device
    segment_size: int = RunOptions.segment_size
    merge: bool = RunOptions.merge
    keep_shards: bool = RunOptions.keep_shards
    resume: bool = RunOptions.resume
    overwrite: bool = RunOptions.overwrite
    dist_timeout: int = RunOptions.dist_timeout


#: Options the user may set (the CLI and TOML names).
OPTION_FIELDS = tuple(f.name for f in fields(ExtractConfig))
#: Old option names still read (TOML keys; the CLI keeps hidden flags), each with a one-line note.
DEPRECATED_NAMES = {"score_threshold": "proposal_score_threshold"}
PATH_FIELDS = {"out", "annotations", "excluded", "proposals", "frames_root", "videos_root", "checkpoint",
               "video_list", "detector_checkpoint"}
#: Settings that change how a box's feature is computed: the fingerprint covers these and the checkpoint.
#: Banks merge only when their fingerprints agree (train and val banks of one model do).
COMPUTE_FIELDS = (
    "fps", "timestamp_start", "start_index", "backbone", "clip_len", "frame_interval", "short_side",
    "roi_output_size", "roi_temporal_pool", "temporal_pool", "spatial_pool", "half", "checkpoint_sha256",
    "precision",
)
#: Settings that choose which keyframes and boxes are stored; a resume must agree on these too
#: (``detection``: the detector's settings and checkpoint hash, when ``extract`` detected the persons).
SELECTION_FIELDS = ("mode", "keyframes", "score_threshold", "whole_frame_fallback", "input_sha256", "stride",
                    "detection")
#: Settings added after banks were first written: absent from an old bank's config means the old behaviour.
_NEW_FIELDS = ("precision", "stride", "detection")


def default_of(name: str) -> Any:
    """The dataclass default of option ``name`` (``--help`` shows these, never a restated copy)."""
    for item in fields(ExtractConfig):
        if item.name == name:
            return item.default
    raise KeyError(name)


def _expected_type(name: str) -> tuple[type, ...]:
    """The TOML value types option ``name`` accepts, from its annotation."""
    annotation = str(next(f.type for f in fields(ExtractConfig) if f.name == name))
    if "Fraction" in annotation:  # fps: 30, 29.97 or "30000/1001" / "auto"
        return (int, float, str)
    if "bool" in annotation:
        return (bool,)
    if "float" in annotation:
        return (int, float)
    if "int" in annotation:
        return (int,)
    return (str,)


def _check_toml_value(path: Path, key: str, name: str, value: Any) -> Any:
    """A TOML value of the right type: a boolean is a boolean (``"no"`` is an error), integers are
    integers; enum options must name a member."""
    expected = _expected_type(name)
    if isinstance(value, bool) and bool not in expected or not isinstance(value, expected):
        words = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}
        wanted = words[expected[-1]] if expected != (int, float) else "a number"
        wanted = "a number or a string" if expected == (int, float, str) else wanted
        raise LfbError(f"{path}: {key} must be {wanted}, got {value!r}")
    for enum in (KeyframeSource, Pool, Precision):
        if enum.__name__ in str(next(f.type for f in fields(ExtractConfig) if f.name == name)):
            return enum.parse(value, f"{path}: {key}")
    return value


def load_toml(path: Path) -> dict[str, Any]:
    """Read a config file: an ``[extract]`` table (or bare keys), dashes or underscores in names,
    values type-checked; anything else (another table, an unknown key) is refused naming the key."""
    try:
        with open(path, "rb") as handle:
            raw = tomllib.load(handle)
    except FileNotFoundError:
        raise LfbError(f"{path}: config file not found") from None
    except (OSError, UnicodeDecodeError) as error:
        raise LfbError(f"{path}: cannot read the config file ({error})") from None
    except tomllib.TOMLDecodeError as error:
        raise LfbError(f"{path}: not valid TOML ({error})") from None
    if "extract" in raw:
        others = sorted(k for k in raw if k != "extract")
        if others:
            raise LfbError(f"{path}: unknown top-level key {others[0]!r}; options go in the [extract] table")
        table = raw["extract"]
        if not isinstance(table, dict):
            raise LfbError(f"{path}: extract must be a table ([extract])")
    else:
        table = raw
    values: dict[str, Any] = {}
    for key, value in table.items():
        name = key.replace("-", "_")
        if name in DEPRECATED_NAMES:
            name = DEPRECATED_NAMES[name]
            deprecation_note(f"{path}: {key} is now {name.replace('_', '-')}")
        if name not in OPTION_FIELDS:
            raise LfbError(f"{path}: unknown key {key!r}; known keys: {', '.join(sorted(OPTION_FIELDS))}")
        values[name] = _check_toml_value(path, key, name, value)
    return values


def build_config(toml_path: Path | None, overrides: dict[str, Any]) -> ExtractConfig:
    """Defaults, then the TOML file, then every override that is not None (options the user gave);
    ``clip_len``/``frame_interval`` not given anywhere take the backbone's default clip."""
    from lfbtool.data.sampling import parse_fps  # numpy: not at import, so the CLI starts light

    unknown = sorted(set(overrides) - set(OPTION_FIELDS))
    if unknown:
        raise ValueError(f"not extract options: {unknown}")
    values = load_toml(toml_path) if toml_path is not None else {}
    values.update({k: v for k, v in overrides.items() if v is not None})
    for name in PATH_FIELDS & values.keys():
        if values[name] is not None:
            values[name] = Path(values[name]).expanduser()
    config = ExtractConfig(**values)
    config.mode = check_mode(config.mode)
    config.keyframes = KeyframeSource.parse(config.keyframes, "--keyframes")
    config.precision = Precision.parse(config.precision, "--precision")
    own_videos = config.keyframes is KeyframeSource.every_second
    if config.fps is None:
        config.fps = "auto" if own_videos and config.videos_root is not None else 30
    config.fps = parse_fps(config.fps)
    if config.timestamp_start is None:
        config.timestamp_start = 0 if own_videos else 900
    for name in ("roi_temporal_pool", "temporal_pool", "spatial_pool"):
        setattr(config, name, Pool.parse(getattr(config, name), f"--{name.replace('_', '-')}"))
    from lfbtool.models.registry import bank_spec

    spec = bank_spec(config.backbone)
    if config.clip_len is None or config.frame_interval is None:
        clip = spec.extract_clip
        config.clip_len = clip.clip_len if config.clip_len is None else config.clip_len
        config.frame_interval = clip.frame_interval if config.frame_interval is None else config.frame_interval
    if spec.clip_frames is not None and config.clip_len != spec.clip_frames:  # a fixed position table
        raise SettingError("clip_len", f"{config.clip_len}: {spec.name} takes clips of exactly {spec.clip_frames} frames")
    validate(config)
    return config


def deprecation_note(text: str) -> None:
    """One ``note:`` line on stderr (rank 0): an old option name still works."""
    from lfbtool.runtime import is_main_process

    if is_main_process():
        import sys

        sys.stderr.write(f"note: {text} (the old name still works for now)\n")


def proposal_threshold(config: ExtractConfig) -> tuple[float, str]:
    """The proposal filter's threshold and where it comes from: the option when given; else, for boxes
    a detector made (``every-second``, or ``--proposals`` written by ``lfbtool detect``, per its
    sidecar), the detector's own threshold, so every box it kept stays; else MMAction2's 0.9."""
    if config.proposal_score_threshold is not None:
        return config.proposal_score_threshold, "option"
    detector_threshold = None
    if config.keyframes is KeyframeSource.every_second:
        detector_threshold = config.detector_score_threshold
    elif config.proposals is not None:
        from lfbtool.detect.outputs import detector_threshold_of

        detector_threshold = detector_threshold_of(config.proposals)
    if detector_threshold is None:
        return DEFAULT_PROPOSAL_SCORE_THRESHOLD, "default"
    return float(detector_threshold), "detector"


def settings_of(config: ExtractConfig) -> ExtractSettings:
    """The frozen settings of ``config``, resolved and checked once (the public entry points call it;
    a config not from :func:`build_config` is resolved as the CLI's would be)."""
    config = build_config(None, {name: getattr(config, name) for name in OPTION_FIELDS})
    threshold, source = proposal_threshold(config)
    options = {**dataclasses.asdict(config), "proposal_score_threshold": threshold, "score_threshold_from": source}
    return ExtractSettings(
        mode=config.mode, out=Path(config.out), selection=project(KeyframeSelection, options),
        frames=project(FrameSource, options), clip=project(ClipSampling, options),
        detector=project(DetectorSettings, options), model=project(FeatureModel, options),
        run=project(RunOptions, options),
    ).check()


def validate(config: ExtractConfig) -> None:
    """Checks across options; a refused value is a SettingError naming the setting (the CLI shows its flag)."""
    project(ClipSampling, config).check()
    project(FeatureModel, config).check()
    if config.proposal_score_threshold is not None:
        KeyframeSelection(proposal_score_threshold=config.proposal_score_threshold).check()
    project(DetectorSettings, config).check()
    check_frame_template(config.frame_template)
    project(FrameSource, config).check()
    project(RunOptions, config).check()
    if config.keyframes is KeyframeSource.every_second:
        if (config.detector_checkpoint is None) == (config.detector_weights is None):
            raise SettingError("keyframes", "{0} every-second detects the persons: give one of {1} FILE or {2} NAME",
                               also=("detector_checkpoint", "detector_weights"))
        if config.proposals is not None or config.annotations is not None:
            raise SettingError("keyframes", "{0} every-second takes no {1}/{2} (it detects the persons)",
                               also=("proposals", "annotations"))
    elif config.proposals is None and (config.keyframes is KeyframeSource.proposals or not config.whole_frame_fallback):
        raise SettingError("proposals", "{0} FILE is needed (or {1} annotated {2}, or {1} every-second with a "
                           "detector)", also=("keyframes", "whole_frame_fallback"))
    if config.keyframes is KeyframeSource.annotated and config.annotations is None:
        raise SettingError("keyframes", "{0} annotated needs {1} FILE", also=("annotations",))


def check_frame_template(template: str) -> None:
    """A frame file name template has exactly one integer field (``img_{:05d}.jpg``) and no directory."""
    try:
        parsed = list(string.Formatter().parse(template))
        names = [f for _, f, _, _ in parsed if f is not None]
        ok = len(names) == 1 and names[0] in ("", "0") and template.format(1) != template.format(2)
    except (ValueError, IndexError, KeyError):
        ok = False
    if not ok or "/" in template or "\\" in template or "\0" in template:
        raise SettingError("frame_template", f"must be a file name with exactly one integer field like "
                                             f"img_{{:05d}}.jpg, got {template!r}")


def hash_inputs(settings: ExtractSettings) -> ExtractSettings:
    """The settings with the content hashes of the annotation, excluded and proposal files."""
    hashes = {}
    for name in ("annotations", "excluded", "proposals"):
        path = getattr(settings.selection, name)
        if path is None:
            continue
        if not Path(path).is_file():
            raise LfbError(f"{path}: {name} file not found")
        hashes[name] = file_sha256(Path(path))
    return dataclasses.replace(settings, input_sha256=hashes)


def resolved_dict(settings: ExtractSettings | ExtractConfig, checkpoint_sha256: str) -> dict[str, Any]:
    """Every option plus the content hashes: what a bank's ``config`` attribute holds (as JSON), in the
    flat shape banks always had (the proposal filter's threshold under its old key ``score_threshold``)."""
    if isinstance(settings, ExtractConfig):
        settings = settings_of(settings)
    data = {k: (str(v) if isinstance(v, Path) else v) for k, v in settings.flat().items()}
    data["score_threshold"] = data.pop("proposal_score_threshold")  # the key banks always had
    data["fps"] = fps_text(settings.frames.fps)
    data["checkpoint_sha256"] = checkpoint_sha256
    data["detection"] = None
    if settings.model.precision is Precision.fp32:
        del data["precision"]  # fp32 banks keep the fingerprint they always had
    return data


def fps_text(fps: int | Fraction | str) -> int | str:
    """JSON for a frame rate: a whole rate as the int it always was (old fingerprints hold), else
    ``"30000/1001"`` or ``"auto"``."""
    if isinstance(fps, Fraction):
        return int(fps) if fps.denominator == 1 else str(fps)
    return fps


def compute_settings(resolved: dict[str, Any]) -> dict[str, Any]:
    """The compute settings of a resolved config; a setting recorded only when it is not its old
    implicit value (``precision`` other than fp32, ``stride``/``detection`` when used) is left out
    otherwise, so banks built before it existed keep their fingerprints."""
    return {name: resolved[name] for name in COMPUTE_FIELDS if name in resolved or name not in _NEW_FIELDS}


def resume_settings(resolved: dict[str, Any]) -> dict[str, Any]:
    names = COMPUTE_FIELDS + SELECTION_FIELDS
    return {name: resolved.get(name) for name in names if name in resolved or name not in _NEW_FIELDS}


def fingerprint(resolved: dict[str, Any]) -> str:
    """The bank's ``config_fingerprint``: the one settings fingerprint of its compute settings (equal
    fingerprints mean comparable features; train and val banks of one model merge)."""
    return settings_fingerprint(compute_settings(resolved))
