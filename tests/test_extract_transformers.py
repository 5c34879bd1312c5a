"""`lfbtool extract` with the transformer trunks on the tiny dataset: a VideoMAE ViT bank equal to the
functional reference (tests/reference.py), the same bank from torchrun (2 processes, one thread each)
and from a killed and resumed run; Swin3D / MViT-v2 banks equal to torchvision's own forward read at
its last map; mvit_v1_b and a wrong VideoMAE clip length refused before anything is written."""

from __future__ import annotations

import signal
import sys

import h5py
import pytest
import torch
from typer.testing import CliRunner

from lfbtool.cli import app
from lfbtool.cli.options import error_text
from lfbtool.errors import LfbError
from lfbtool.models import create_backbone
from tests.conftest import SEGMENT, run_lfbtool
from tests.extract_runs import (
    CRASH_RUNNER,
    assert_same_bank,
    bank_keys,
    run,
    summary_counts,
    torchrun_command,
)
from tests.reference import videomae_reference
from tests.test_extract_backbones import reference_rows
from tests.test_extract_e2e import expected_keyframes, read_bank
from tests.test_vit_mae import random_state, runner_checkpoint

VIT = "vit_s_videomae"  # the smallest real VideoMAE layout; B and L differ only in width and depth
VIT_CLIP = ("--clip-len", "16", "--frame-interval", "1")
#: torchvision trunks: short side 64 (stride 32 leaves a 2x2 map), 4-frame clips, their mean/std.
TV = {"swin3d_t": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)), "mvit_v2_s": ((0.45,) * 3, (0.225,) * 3)}


@pytest.fixture(scope="module")
def vit_checkpoint(tmp_path_factory) -> tuple[object, dict[str, torch.Tensor]]:
    """A Runner-format AVA detector checkpoint: every ViT weight random (q/v biases, LayerNorms)."""
    state = random_state(create_backbone(VIT), seed=5)
    checkpoint = runner_checkpoint(state)
    checkpoint["state_dict"]["roi_head.bbox_head.fc_cls.weight"] = torch.zeros(81, 384)
    path = tmp_path_factory.mktemp("vit") / "vit_s_ava.pth"
    torch.save(checkpoint, path)
    return path, state


def _vit_args(tiny_data, out, checkpoint, *extra: str) -> list[str]:
    return tiny_data.extract_args(out, "--backbone", VIT, "--checkpoint", str(checkpoint), *VIT_CLIP, *SEGMENT,
                                  "--no-half", *extra)


@pytest.fixture(scope="module")
def vit_bank(tiny_data, vit_checkpoint, tmp_path_factory):
    """The one-process bank, in this process (one thread, as the torchrun ranks)."""
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("vit_bank")
    result = CliRunner().invoke(app, _vit_args(tiny_data, out, vit_checkpoint[0]))
    assert result.exit_code == 0, result.output
    return out / "lfb_train.h5"


def _check_rows(tiny_data, bank_path, forward, clip_len: int, interval: int, width: int, **reference) -> None:
    bank = read_bank(bank_path)
    expected = expected_keyframes(tiny_data.example)
    assert list(bank) == sorted(expected)
    portrait = tiny_data.example.video_ids[-1]  # a keyframe of the portrait video, and the first one
    for key in (sorted(expected)[0], next(k for k in sorted(expected) if k[0] == portrait)):
        stored = bank[key]
        assert stored["features"].shape == (len(expected[key][0]), width)
        rows = reference_rows(tiny_data.example, forward, clip_len, interval, *key, stored["boxes"], **reference)
        assert rows.std() > 0.01 and torch.equal(torch.from_numpy(stored["features"]), rows), key


def test_vit_bank_verifies_and_equals_reference(tiny_data, vit_checkpoint, vit_bank) -> None:
    verified = run_lfbtool(["verify", str(vit_bank)])
    assert verified.returncode == 0, verified.stderr
    with h5py.File(vit_bank) as handle:
        assert int(handle.attrs["feature_dim"]) == 384 and '"backbone": "vit_s_videomae"' in handle.attrs["config"]
    state = vit_checkpoint[1]
    _check_rows(tiny_data, vit_bank, lambda x: videomae_reference(state, x, heads=6), 16, 1, 384)


def test_vit_torchrun_and_resume_give_the_one_process_bank(tiny_data, vit_checkpoint, vit_bank, tmp_path) -> None:
    two = tmp_path / "two"
    launched = run(torchrun_command(["--standalone", "--nproc_per_node=2"],
                                    _vit_args(tiny_data, two, vit_checkpoint[0], "--device", "cpu")))
    assert launched.returncode == 0, launched.stderr
    assert_same_bank(vit_bank, two / "lfb_train.h5")

    resumed_out = tmp_path / "resumed"
    args = _vit_args(tiny_data, resumed_out, vit_checkpoint[0])
    killed = run([sys.executable, str(CRASH_RUNNER), *args], LFB_CRASH_AT="forward", LFB_CRASH_N="4")
    assert killed.returncode == -signal.SIGKILL and not (resumed_out / "lfb_train.h5").exists()
    resumed = CliRunner().invoke(app, args + ["--resume"])  # in this process: one torch import less
    assert resumed.exit_code == 0, resumed.output
    keyframes, _, done_before = summary_counts(resumed.output)
    assert done_before == 2 and keyframes == len(bank_keys(vit_bank))  # one segment of 2 before forward 4 died
    assert_same_bank(vit_bank, resumed_out / "lfb_train.h5")


def _torchvision_map(model: torch.nn.Module, name: str):
    """torchvision's own forward, read at its last map: Swin's ``avgpool`` input; MViT's normed tokens
    (class token dropped) on the last block's grid, with the grid size torchvision tracks set to the
    clip's (it is fixed at build time; the relative positions resize themselves)."""

    def forward(x: torch.Tensor) -> torch.Tensor:
        seen: dict[str, object] = {}
        if name.startswith("swin"):
            hooks = [model.avgpool.register_forward_hook(lambda m, i, o: seen.__setitem__("map", i[0]))]
        else:
            t, h, w = model.conv_proj(x).shape[2:]
            model.pos_encoding.temporal_size, model.pos_encoding.spatial_size = t, (h, w)
            hooks = [model.norm.register_forward_hook(lambda m, i, o: seen.__setitem__("tokens", o)),
                     model.blocks[-1].register_forward_hook(lambda m, i, o: seen.__setitem__("thw", o[1]))]
        model(x)
        for hook in hooks:
            hook.remove()
        if "map" in seen:
            return seen["map"]
        tokens = seen["tokens"]
        return tokens[:, 1:].transpose(1, 2).reshape(tokens.shape[0], tokens.shape[2], *seen["thw"])

    return forward


@pytest.mark.parametrize("name", sorted(TV))
def test_torchvision_transformer_bank_equals_torchvision_forward(tiny_data, tmp_path, name: str) -> None:
    """A torchvision classifier's own state dict (``head.*`` ignored) gives a bank whose rows are
    torchvision's map pooled as for every detector."""
    import torchvision

    torch.manual_seed(6)
    model = torchvision.models.get_model(name, weights=None).eval()
    torch.save(model.state_dict(), tmp_path / f"{name}.pth")
    out = tmp_path / "out"
    result = CliRunner().invoke(app, tiny_data.extract_args(
        out, "--backbone", name, "--checkpoint", str(tmp_path / f"{name}.pth"), "--clip-len", "4",
        "--frame-interval", "1", "--short-side", "64", "--no-half", "--batch-size", "1", "--device", "cpu"))
    assert result.exit_code == 0, result.output
    mean, std = (torch.tensor(v).view(1, 3, 1, 1, 1) for v in TV[name])
    _check_rows(tiny_data, out / "lfb_train.h5", _torchvision_map(model, name), 4, 1, 768, short_side=64,
                stride=32, normalize=lambda x: (x / 255 - mean) / std)


def test_refusals_come_before_anything_is_written(tiny_data, vit_checkpoint, tmp_path) -> None:
    out = tmp_path / "mvit"
    result = CliRunner().invoke(app, tiny_data.extract_args(out, "--backbone", "mvit_v1_b", "--device", "cpu"))
    assert isinstance(result.exception, LfbError) and result.exit_code != 0
    assert str(result.exception).startswith("mvit_v1_b cannot build a feature bank: its absolute position table")
    out = tmp_path / "vit"
    result = CliRunner().invoke(app, tiny_data.extract_args(out, "--backbone", VIT, "--clip-len", "8"))
    assert isinstance(result.exception, LfbError)
    assert error_text(result.exception) == "--clip-len 8: vit_s_videomae takes clips of exactly 16 frames"
    assert not (tmp_path / "mvit").exists() or not any((tmp_path / "mvit").iterdir())
    assert not out.exists() or not any(out.iterdir())
