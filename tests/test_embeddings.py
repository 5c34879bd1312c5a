"""recognize --features: the stored embedding is the pooled backbone feature (plain-torch reference),
per view with --average-clips none, and their plain mean otherwise; the file's layout and provenance."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from lfbtool import read_embeddings
from lfbtool.cli import app
from lfbtool.errors import LfbError
from lfbtool.models.checkpoint import checkpoint_sha256
from lfbtool.testing.checkpoints import random_recognizer_state
from lfbtool.testing.synthetic import synthetic_frames, write_frame_dir
from tests.reference import KINETICS_SPATIAL_STRIDE, slowonly_r50_reference

PNG = "img_{:05d}.png"
MEAN = torch.tensor([123.675, 116.28, 103.53]).view(1, 3, 1, 1, 1)
STD = torch.tensor([58.395, 57.12, 57.375]).view(1, 3, 1, 1, 1)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("embeddings")
    frames = synthetic_frames(8, 32, 40, seed=4)
    write_frame_dir(root / "clip", frames, template=PNG)
    state = random_recognizer_state("slowonly_r50", num_classes=3, seed=0)
    torch.save({"state_dict": state}, root / "slowonly.pth")
    return {"root": root, "frames": frames, "state": state}


def run(data, out, *extra):
    root = data["root"]
    return CliRunner().invoke(app, [
        "recognize", str(root / "clip"), str(root / "missing"), "--backbone", "slowonly_r50",
        "--checkpoint", str(root / "slowonly.pth"), "--num-clips", "2", "--clip-len", "4", "--frame-interval", "1",
        "--short-side", "32", "--crop-size", "32", "--frame-template", PNG, "--device", "cpu",
        "--features", str(out), *extra])


def test_embeddings_are_the_pooled_backbone_features(data, tmp_path):
    result = run(data, tmp_path / "none.h5", "--average-clips", "none")
    assert result.exit_code == 1, result.output  # "missing" fails, the clip is scored
    per_view = read_embeddings(tmp_path / "none.h5")
    # 8 frames, clip 4 x 1, 2 clips: offsets 0 and 4; frames are 32 x 40 (no resize), centre crop x 4:36.
    views = torch.stack([torch.from_numpy(data["frames"][s:s + 4]).permute(3, 0, 1, 2)[..., 4:36] for s in (0, 4)])
    backbone = {k[len("backbone."):]: v for k, v in data["state"].items() if k.startswith("backbone.")}
    with torch.no_grad():
        expected = slowonly_r50_reference(backbone, (views.float() - MEAN) / STD, KINETICS_SPATIAL_STRIDE).mean(dim=(2, 3, 4))
    assert per_view.inputs == [str(data["root"] / "clip")] and per_view.failed == [str(data["root"] / "missing")]
    assert per_view.embeddings.shape == (1, 2, 2048) and per_view.num_views.tolist() == [2]
    np.testing.assert_allclose(per_view.embeddings[0], expected.numpy(), rtol=1e-4, atol=1e-5)
    assert per_view.checkpoint_sha256 == checkpoint_sha256(data["root"] / "slowonly.pth")
    assert per_view.average_clips == "none" and per_view.settings["num_clips"] == 2

    assert run(data, tmp_path / "score.h5").exit_code == 1
    mean = read_embeddings(tmp_path / "score.h5")
    assert mean.embeddings.shape == (1, 2048)
    np.testing.assert_allclose(mean.embeddings[0], per_view.embeddings[0].mean(0), rtol=1e-6, atol=1e-7)
    with h5py.File(tmp_path / "score.h5", "r") as handle:
        assert handle.attrs["format"] == "lfbtool-embeddings" and handle.attrs["format_version"] == 1
        assert sorted(handle) == ["embeddings", "failed", "inputs", "num_views"]
    assert not (tmp_path / "score.h5.parts").exists()


def test_read_embeddings_refuses_other_files(tmp_path):
    with h5py.File(tmp_path / "other.h5", "w") as handle:
        handle.attrs["format"] = "lfbtool-bank"
    with pytest.raises(LfbError, match="not an lfbtool embeddings file"):
        read_embeddings(tmp_path / "other.h5")
    with pytest.raises(LfbError, match="cannot open as HDF5"):
        read_embeddings(tmp_path / "missing.h5")
