"""Commands that need no model start without torch: each runs in its own process, which reports
whether torch or torchvision got imported (``import torch`` alone is ~0.9 GB RSS and seconds)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from lfbtool.bank.writer import BankWriter

# Runs the CLI as the console script does and, at exit (after typer's sys.exit), names the heavy
# modules that were imported on stderr's last line.
WRAPPER = """
import atexit, json, sys
atexit.register(lambda: sys.stderr.write("\\nLOADED " + json.dumps(
    sorted(m for m in ("torch", "torchvision") if m in sys.modules)) + "\\n"))
sys.argv = ["lfbtool", *sys.argv[1:]]
from lfbtool.cli import main
main()
"""
C = 8


def lfbtool_light(*args: str | Path, columns: int | None = None) -> tuple[subprocess.CompletedProcess, list[str]]:
    """Run ``lfbtool ARGS`` in a new process; the result and the heavy modules it imported."""
    env = dict(os.environ, **({"COLUMNS": str(columns)} if columns else {}))
    done = subprocess.run([sys.executable, "-c", WRAPPER, *map(str, args)], capture_output=True, text=True,
                          timeout=120, env=env)
    last = done.stderr.strip().splitlines()[-1] if done.stderr.strip() else ""
    assert last.startswith("LOADED "), done.stderr
    return done, json.loads(last[len("LOADED "):])


def write_bank(path: Path, videos: dict[str, list[int]], seed: int) -> int:
    """A small fp16 bank written with BankWriter (no torch): 2 boxes per keyframe; returns its rows."""
    rng = np.random.default_rng(seed)
    rows = 0
    with BankWriter(path, feature_dim=C, dtype="float16", mode="train", config_json='{"clip_len": 4}',
                    config_fingerprint="light") as writer:
        for video in sorted(videos):
            for ts in videos[video]:
                writer.append(video, ts, rng.standard_normal((2, C)).astype(np.float16),
                              np.tile(np.float32([0.1, 0.2, 0.6, 0.9]), (2, 1)), np.float32([0.9, 0.8]))
                rows += 2
    return rows


@pytest.fixture(scope="module")
def banks(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("light")
    write_bank(root / "a.h5", {"v1": [902, 903], "v2": [902]}, seed=0)
    write_bank(root / "b.h5", {"v3": [905]}, seed=1)
    return {"root": root, "a": root / "a.h5", "b": root / "b.h5"}


def test_help_and_backbones_json_start_without_torch() -> None:
    done, loaded = lfbtool_light("--help")
    assert done.returncode == 0 and "extract" in done.stdout and "backbones" in done.stdout
    assert loaded == []
    done, loaded = lfbtool_light("--version")
    assert done.returncode == 0 and done.stdout.startswith("lfbtool ") and loaded == []
    for command, option in (("extract", "--precision"), ("recognize", "--precision"), ("detect", "--detector")):
        done, loaded = lfbtool_light(command, "--help")
        assert done.returncode == 0 and option in done.stdout and loaded == [], command
    done, loaded = lfbtool_light("backbones", "--json")
    from lfbtool.models import list_backbones

    assert done.returncode == 0 and loaded == []
    specs = json.loads(done.stdout)
    assert [s["name"] for s in specs] == [s.name for s in list_backbones()]
    slowfast = next(s for s in specs if s["name"] == "slowfast_r50")
    assert slowfast["channels"] == 2304 and slowfast["pathway_channels"] == [2048, 256]
    assert slowfast["extract_clip"] == {"clip_len": 32, "frame_interval": 2}


def test_packages_resolve_their_names_lazily() -> None:
    """``lfbtool.models`` / ``lfbtool.data`` load names on first use: specs and sampling need no torch,
    and every name in ``__all__`` resolves."""
    code = ("import sys, lfbtool.models, lfbtool.data; from lfbtool.models import backbone_spec, list_backbones; "
            "from lfbtool.data import test_clip_numbers; import lfbtool.extract.config, lfbtool.models.registry; "
            "assert backbone_spec('s3d').min_frames == 5 and len(list_backbones()) == 17; "
            "print(sorted(m for m in ('torch', 'torchvision') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "[]", done.stderr
    import lfbtool.data
    import lfbtool.models

    for package in (lfbtool.models, lfbtool.data):
        for name in package.__all__:
            assert getattr(package, name) is not None, name
    with pytest.raises(AttributeError):
        lfbtool.models.no_such_name  # noqa: B018


def test_backbones_fit_80_columns_in_a_pipe() -> None:
    from lfbtool.models import list_backbones

    done, loaded = lfbtool_light("backbones", columns=80)
    assert done.returncode == 0 and loaded == []
    lines = done.stdout.splitlines()
    configs = {config.split()[0] for spec in list_backbones() for config in spec.mmaction_configs}
    long = [line for line in lines if len(line) > 80]  # only a whole config name, which is never cut
    assert all(line.strip() in configs for line in long), "\n".join(long)
    firsts = {line.split()[0] for line in lines if line and not line.startswith(" ")}
    names = {line.strip().split()[0] for line in lines if line.startswith("      ")}
    for spec in list_backbones():
        assert spec.name in firsts, spec.name  # whole, at the start of its row
        assert spec.description in " ".join(" ".join(lines).split())  # wrapped lines joined back
        for config in spec.mmaction_configs:  # whole, on a line of its own
            assert config.split()[0] in names, config
    assert "slowonly_r50-in1k-pre-nl-embedded-gaussian_8xb16-4x16x1-steplr-150e_kinetics400-rgb" in names


def test_verify_inspect_export_npz_start_without_torch(banks, tmp_path) -> None:
    done, loaded = lfbtool_light("verify", banks["a"])
    assert done.returncode == 0 and "2 videos, 3 keyframes, 6 rows of 8-d float16" in done.stdout
    assert loaded == []
    done, loaded = lfbtool_light("inspect", banks["a"], "--json", "--video", "v1")
    assert done.returncode == 0 and loaded == []
    info = json.loads(done.stdout)
    assert (info["videos"], info["keyframes"], info["boxes"]) == (2, 3, 6) and info["video"]["keyframes"] == 2
    done, loaded = lfbtool_light("inspect", banks["a"])
    assert done.returncode == 0 and loaded == [] and "3 keyframes" in done.stdout
    done, loaded = lfbtool_light("export", banks["a"], "--format", "npz-dir", "-o", tmp_path / "npz")
    assert done.returncode == 0 and loaded == []
    with np.load(tmp_path / "npz" / "v1.npz") as npz:
        assert npz["timestamps"].tolist() == [902, 903] and npz["features"].shape == (4, C)


def test_diff_starts_without_torch(banks) -> None:
    done, loaded = lfbtool_light("diff", banks["a"], banks["a"])
    assert done.returncode == 0 and "identical" in done.stdout and loaded == [], done.stderr
    done, loaded = lfbtool_light("diff", banks["a"], banks["b"], "--json")
    assert done.returncode == 1 and loaded == [], done.stderr
    assert json.loads(done.stdout)["only_in_b"] == ["v3,0905"]


def test_merge_of_banks_starts_without_torch(banks, tmp_path) -> None:
    merged = tmp_path / "merged.h5"
    done, loaded = lfbtool_light("merge", banks["a"], banks["b"], "-o", merged)
    assert done.returncode == 0 and "4 keyframes, 8 rows" in done.stdout, done.stderr
    assert loaded == []


def test_merge_of_an_extract_directory_starts_without_torch(tiny_data, tmp_path) -> None:
    from typer.testing import CliRunner

    from lfbtool.cli import app

    out = tmp_path / "out"
    made = CliRunner().invoke(app, tiny_data.extract_args(out, "--no-merge", "--device", "cpu"))
    assert made.exit_code == 0 and not (out / "lfb_train.h5").exists(), made.output
    done, loaded = lfbtool_light("merge", out, "--mode", "train")
    assert done.returncode == 0 and (out / "lfb_train.h5").is_file(), done.stderr
    assert loaded == []


def test_import_starts_without_torch_and_the_pickle_export_is_the_one_that_needs_it(banks, tmp_path) -> None:
    """``export --format mmaction-pkl`` writes with torch.save: it imports torch (which also shows the
    check sees an import); reading that file back with ``import`` does not."""
    pkl = tmp_path / "lfb_train.pkl"
    done, loaded = lfbtool_light("export", banks["a"], "--format", "mmaction-pkl", "-o", pkl)
    assert done.returncode == 0 and loaded == ["torch"], done.stderr
    done, loaded = lfbtool_light("import", pkl, "-o", tmp_path / "back.h5")
    assert done.returncode == 0 and "3 keyframes, 6 features (8-d float16" in done.stdout, done.stderr
    assert loaded == []
    done, loaded = lfbtool_light("verify", tmp_path / "back.h5")
    assert done.returncode == 0 and "imported from MMAction2" in done.stdout and loaded == []
