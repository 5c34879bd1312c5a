"""Config resolution: defaults <- TOML <- options, validation, and what the fingerprint covers."""

from __future__ import annotations

from pathlib import Path

import pytest

from lfbtool.cli.options import error_text
from lfbtool.errors import LfbError, SettingError
from lfbtool.extract.config import build_config, fingerprint, resolved_dict, resume_settings
from lfbtool.runs.settings import describe_differences

BASE = {"frames_root": Path("/f"), "proposals": Path("/p.pkl"), "annotations": Path("/a.csv")}


def test_toml_sets_and_options_override(tmp_path):
    toml = tmp_path / "c.toml"
    toml.write_text('[extract]\nclip-len = 8\nframe_interval = 4\nframes-root = "/frames"\nproposals = "/p.pkl"\n'
                    'annotations = "/a.csv"\n')
    config = build_config(toml, {"clip_len": 2, "short_side": None})
    assert (config.clip_len, config.frame_interval, config.short_side) == (2, 4, 256)
    assert config.frames_root == Path("/frames")


def test_unknown_toml_key_names_file_and_key(tmp_path):
    toml = tmp_path / "c.toml"
    toml.write_text("clip-lenn = 8\n")
    with pytest.raises(LfbError, match=r"c\.toml: unknown key 'clip-lenn'"):
        build_config(toml, {})


def test_invalid_values_are_refused():
    with pytest.raises(LfbError, match="--spatial-pool must be one of avg, max, got 'mean'"):
        build_config(None, {**BASE, "spatial_pool": "mean"})
    with pytest.raises(LfbError, match="clip_len must be a positive integer"):
        build_config(None, {**BASE, "clip_len": 0})
    with pytest.raises(LfbError, match="frames_root DIR or videos_root DIR"):
        build_config(None, {"proposals": Path("/p.pkl"), "annotations": Path("/a.csv")})


def test_fingerprint_covers_compute_settings_only():
    base = resolved_dict(build_config(None, BASE), "abc")
    same = resolved_dict(build_config(None, {**BASE, "num_workers": 7, "out": Path("/elsewhere"), "mode": "val"}), "abc")
    assert fingerprint(base) == fingerprint(same)  # train and val banks of one model can be merged
    for change in ({"clip_len": 8}, {"spatial_pool": "avg"}, {"half": False}):
        assert fingerprint(resolved_dict(build_config(None, {**BASE, **change}), "abc")) != fingerprint(base)
    assert fingerprint(resolved_dict(build_config(None, BASE), "other-checkpoint")) != fingerprint(base)


def test_resume_settings_also_cover_selection_and_name_differences():
    a = resume_settings(resolved_dict(build_config(None, BASE), "abc"))
    b = resume_settings(resolved_dict(build_config(None, {**BASE, "clip_len": 8, "proposal_score_threshold": 0.5}),
                                      "abc"))
    text = describe_differences(a, b)
    assert "clip_len 4 now, 8 in the earlier run" in text
    assert "score_threshold 0.9 now, 0.5 in the earlier run" in text
    assert "short_side" not in text


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('half = "no"', r"c\.toml: half must be true or false, got 'no'"),
        ("half = 1", r"c\.toml: half must be true or false, got 1"),
        ("clip-len = 4.0", r"c\.toml: clip-len must be an integer, got 4\.0"),
        ("clip-len = true", r"c\.toml: clip-len must be an integer, got True"),
        ('clip-len = "4"', r"c\.toml: clip-len must be an integer, got '4'"),
        ("score-threshold = true", r"c\.toml: score-threshold must be a number, got True"),
        ("frames-root = 3", r"c\.toml: frames-root must be a string, got 3"),
        ('spatial-pool = "mean"', r"c\.toml: spatial-pool must be one of avg, max, got 'mean'"),
    ],
)
def test_toml_values_are_type_checked(tmp_path, line, message):
    toml = tmp_path / "c.toml"
    toml.write_text(f"[extract]\n{line}\n")
    with pytest.raises(LfbError, match=message):
        build_config(toml, {})


def test_toml_tables_beside_extract_are_refused(tmp_path):
    toml = tmp_path / "c.toml"
    toml.write_text('[extract]\nclip-len = 4\n[recognize]\nnum-clips = 3\n')
    with pytest.raises(LfbError, match=r"c\.toml: unknown top-level key 'recognize'"):
        build_config(toml, {})


def test_command_line_errors_are_not_attributed_to_the_toml_file(tmp_path):
    toml = tmp_path / "c.toml"
    toml.write_text('[extract]\nframes-root = "/f"\nproposals = "/p.pkl"\nannotations = "/a.csv"\n')
    with pytest.raises(SettingError) as info:
        build_config(toml, {"clip_len": -1})
    assert str(info.value) == "clip_len must be a positive integer, got -1"  # the library names the setting
    assert error_text(info.value) == "--clip-len must be a positive integer, got -1"  # the CLI, its flag


@pytest.mark.parametrize("mode", ["", "../x", "a/b", ".hidden", "tr ain", "x" * 80])
def test_mode_is_a_plain_name(mode):
    with pytest.raises(SettingError, match="^mode must be a plain name"):
        build_config(None, {**BASE, "mode": mode})


def test_clip_defaults_come_from_the_backbone_spec():
    from lfbtool.models import backbone_spec

    clip = backbone_spec("slowonly_r50").extract_clip
    config = build_config(None, BASE)
    assert (config.clip_len, config.frame_interval) == (clip.clip_len, clip.frame_interval) == (4, 16)
    assert build_config(None, {**BASE, "clip_len": 8}).frame_interval == 16


def test_every_extract_option_is_a_config_field_and_back():
    """The CLI passes each option to build_config by name: both lists must be the same."""
    from typer.main import get_command

    from lfbtool.cli import app
    from lfbtool.extract.config import OPTION_FIELDS

    command = get_command(app).commands["extract"]
    deprecated = {"score_threshold"}  # a hidden flag for an old name, mapped onto its new option
    assert {p.name for p in command.params} - {"config"} - deprecated == set(OPTION_FIELDS)


@pytest.mark.parametrize("template", ["img.jpg", "img_{}_{}.jpg", "img_{name}.jpg", "img_{:05d", "x/{:05d}.jpg",
                                      "img_{:s}.jpg"])
def test_frame_template_has_one_integer_field(template):
    with pytest.raises(LfbError, match="frame_template must be a file name with exactly one integer field"):
        build_config(None, {**BASE, "frame_template": template})
    assert build_config(None, {**BASE, "frame_template": "frame{:06d}.png"}).frame_template == "frame{:06d}.png"


def test_recorded_fingerprints_of_unchanged_runs_stay_those_of_main():
    """Typed settings changed how the config is held, not what a bank records: the fingerprint and the
    --resume settings of a default run equal those computed on main before the change (so a run
    started there resumes here). Only every-second's proposal filter changed on purpose (issue 21.3):
    its compute fingerprint stays, its resume settings now record the detector's 0.5."""
    from lfbtool.runs.settings import fingerprint as settings_fingerprint

    resolved = resolved_dict(build_config(None, BASE), "abc")
    assert (fingerprint(resolved), settings_fingerprint(resume_settings(resolved))) == ("40860ea81da31ef7",
                                                                                      "5dbcf403b3b2be29")
    own = resolved_dict(build_config(None, {"videos_root": Path("/v"), "keyframes": "every-second",
                                            "detector_checkpoint": Path("/d.pt")}), "abc")
    assert fingerprint(own) == "5451624700574de1"
    assert (own["score_threshold"], own["score_threshold_from"]) == (0.5, "detector")


def test_settings_are_frozen_and_parsed():
    from dataclasses import FrozenInstanceError

    from lfbtool.choices import KeyframeSource, Pool
    from lfbtool.extract.config import settings_of

    settings = settings_of(build_config(None, {**BASE, "spatial_pool": "avg", "fps": "29.97"}))
    assert settings.model.spatial_pool is Pool.avg and settings.selection.keyframes is KeyframeSource.annotated
    assert str(settings.frames.fps) == "2997/100" and isinstance(settings.frames.frames_root, Path)
    with pytest.raises(FrozenInstanceError):
        settings.clip.clip_len = 8  # type: ignore[misc]


def test_detect_and_extract_share_the_detector_settings():
    """extract hands detect its DetectorSettings object: one definition, no field copied by hand."""
    from lfbtool.detect.run import DetectConfig
    from lfbtool.extract.config import settings_of
    from lfbtool.settings import DetectorSettings

    settings = settings_of(build_config(None, {"videos_root": Path("/v"), "keyframes": "every-second",
                                               "detector_checkpoint": Path("/d.pt"), "max_per_frame": 7}))
    assert settings.detector == DetectorSettings(detector_checkpoint=Path("/d.pt"), max_per_frame=7)
    assert DetectConfig.__dataclass_fields__["detector"].type in ("DetectorSettings", DetectorSettings)
