"""inspect_bank: counts and distribution computed by hand for a tiny bank; per-video drill-down; CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from lfbtool.bank.inspect import inspect_bank
from lfbtool.bank.writer import BankWriter
from lfbtool.cli import app
from lfbtool.errors import LfbError

C = 4
SHA = "ab" * 32


def make_bank(path: Path) -> None:
    """Video a: 902 (2 boxes, scores .95/.91), 903 (1 box, NaN score); video b: 1800 (2 boxes)."""
    with BankWriter(
        path, feature_dim=C, dtype="float16", mode="val", config_json='{"backbone": "slowonly_r50"}',
        config_fingerprint="0123456789abcdef", checkpoint_sha256=SHA,
    ) as writer:
        writer.append("a", 902, np.ones((2, C)), np.zeros((2, 4)), np.array([0.95, 0.91]))
        writer.append("a", 903, np.ones((1, C)), np.zeros((1, 4)), np.array([np.nan]))
        writer.append("b", 1800, np.ones((2, C)), np.zeros((2, 4)), np.array([0.5, 0.99]))


def test_inspect_summary(tmp_path: Path) -> None:
    path = tmp_path / "lfb_val.h5"
    make_bank(path)
    info = inspect_bank(path)
    assert info["format"] == "lfbtool-bank" and info["format_version"] == 2
    assert (info["feature_dim"], info["dtype"], info["mode"]) == (C, "float16", "val")
    assert (info["videos"], info["keyframes"], info["boxes"], info["boxes_without_score"]) == (2, 3, 5, 1)
    assert info["boxes_per_keyframe"] == {"min": 1, "max": 2, "mean": round(5 / 3, 4), "histogram": {1: 1, 2: 2}}
    assert info["timestamp_range"] == [902, 1800]
    assert info["config"] == {"backbone": "slowonly_r50"}
    assert info["checkpoint_sha256"] == SHA and info["config_fingerprint"] == "0123456789abcdef"
    assert info["file_size"] == path.stat().st_size
    assert info["created_by"].startswith("lfbtool ")
    assert "video" not in info


def test_inspect_video(tmp_path: Path) -> None:
    path = tmp_path / "lfb_val.h5"
    make_bank(path)
    video = inspect_bank(path, video="a")["video"]
    assert (video["keyframes"], video["boxes"], video["timestamp_range"]) == (2, 3, [902, 903])
    assert video["keys"] == [
        {"key": "a,0902", "timestamp": 902, "boxes": 2, "min_score": 0.91, "max_score": 0.95},
        {"key": "a,0903", "timestamp": 903, "boxes": 1, "min_score": None, "max_score": None},
    ]
    with pytest.raises(KeyError, match="'zz'"):
        inspect_bank(path, video="zz")


REAL_CONFIG = {
    "backbone": "slowonly_r50", "checkpoint": "/ckpt/slowonly_ava.pth", "checkpoint_sha256": SHA, "clip_len": 4,
    "frame_interval": 16, "fps": 30, "short_side": 256, "roi_output_size": 8, "roi_temporal_pool": "avg",
    "temporal_pool": "avg", "spatial_pool": "max", "half": True, "keyframes": "annotated", "score_threshold": 0.9,
    "whole_frame_fallback": True, "annotations": "/data/ava_val_v2.2.csv", "batch_size": 4, "num_workers": 4,
    "input_sha256": {"annotations": "cd" * 32, "proposals": "ef" * 32},
}


def test_inspect_cli(tmp_path: Path) -> None:
    path = tmp_path / "lfb_val.h5"
    make_bank(path)
    runner = CliRunner()
    result = runner.invoke(app, ["inspect", str(path), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["boxes_per_keyframe"]["histogram"] == {"1": 1, "2": 2}
    result = runner.invoke(app, ["inspect", str(path), "--video", "a"])
    assert result.exit_code == 0, result.output
    assert "keyframes" in result.output and "a,0903" in result.output and "fingerprint" in result.output
    not_bank = tmp_path / "x.h5"
    not_bank.write_bytes(b"\x89HDF nope")
    result = runner.invoke(app, ["inspect", str(not_bank)])
    assert isinstance(result.exception, LfbError) and "not an lfbtool bank" in str(result.exception)


def test_inspect_summary_fits_a_screen_and_names_the_settings(tmp_path: Path) -> None:
    path = tmp_path / "lfb_val.h5"
    with BankWriter(path, feature_dim=C, dtype="float16", mode="val", config_json=json.dumps(REAL_CONFIG),
                    config_fingerprint="0123456789abcdef", checkpoint_sha256=SHA) as writer:
        writer.append("a", 902, np.ones((2, C)), np.zeros((2, 4)), np.array([0.95, 0.91]))
    result = CliRunner().invoke(app, ["inspect", str(path)], terminal_width=100)
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert len(lines) <= 24, result.output  # one screen at 100 columns, the whole config left out
    text = " ".join(lines)
    for wanted in ("slowonly_r50", "/ckpt/slowonly_ava.pth", SHA[:12], "4 x 16 frames at 30 fps", "max",
                   "compute fp32, stored float16", "annotated"):
        assert wanted in text, wanted
    assert "input_sha256" not in text and "num_workers" not in text
    full = CliRunner().invoke(app, ["inspect", str(path), "--config"], terminal_width=100)
    assert "input_sha256" in full.output and "num_workers" in full.output
