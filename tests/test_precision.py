"""Precision: the option's errors, fp32 bit for bit the plain forward, bf16 close to fp32."""

from __future__ import annotations

import contextlib

import pytest
import torch
import torch.nn.functional as F

from lfbtool.errors import LfbError
from lfbtool.models import create_backbone
from lfbtool.runtime.precision import (
    Precision,
    autocast,
    channels_last,
    check_precision,
    cpu_native_bf16,
    prepare_model,
    run_backbone,
)
from lfbtool.testing.checkpoints import damp_residual_branches, random_backbone_state


def damped_slowonly(seed: int = 1) -> torch.nn.Module:
    """Random calibrated weights, residual branches damped (see damp_residual_branches: undamped
    random networks are chaotic, bf16 error there says nothing about trained weights)."""
    model = create_backbone("slowonly_r50")
    model.load_state_dict(random_backbone_state("slowonly_r50", seed=seed, calibration_shape=(2, 3, 4, 64, 64)))
    return damp_residual_branches(model).eval()


# /proc/cpuinfo as an AMX Xeon and as an AVX2-only EPYC show it (flags cut short)
WITH_BF16 = "processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f avx512_bf16 amx_bf16 amx_tile\n\nprocessor\t: 1\n"
WITHOUT_BF16 = "processor\t: 0\nflags\t\t: fpu sse2 avx2 fma bmi2\nbugs\t\t: avx512_bf16_is_not_a_flag\n"


@pytest.fixture(scope="module")
def backbone():
    return damped_slowonly()


def test_option_parses_and_refuses(monkeypatch):
    assert check_precision("fp32", "cpu") is Precision.fp32
    assert check_precision("bf16", "cpu", cpuinfo=WITH_BF16) is Precision.bf16
    with pytest.raises(LfbError, match=r"^--precision must be one of fp32, bf16, fp16, auto, got 'half'$"):
        check_precision("half", "cpu")
    with pytest.raises(LfbError, match=r"^--precision fp16 needs a CUDA device, not cpu; use bf16 or fp32"):
        check_precision("fp16", "cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device", lambda device: contextlib.nullcontext())
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: including_emulation)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a, **k: "Tesla V100")
    with pytest.raises(LfbError, match=r"^--precision bf16: Tesla V100 has no bfloat16 support; use fp16 or fp32$"):
        check_precision("bf16", "cuda:0")


def test_autocast_and_layout_helpers():
    assert type(autocast("fp32", "cpu")).__name__ == "nullcontext"
    with autocast("bf16", "cpu"):
        assert torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == torch.bfloat16
    x = torch.randn(1, 3, 2, 4, 4)
    assert channels_last(x, "fp32") is x
    assert channels_last(x, "bf16").is_contiguous(memory_format=torch.channels_last_3d)
    assert channels_last(torch.randn(1, 3, 4, 4), "fp16").is_contiguous(memory_format=torch.channels_last)
    model = torch.nn.Sequential(torch.nn.Conv3d(3, 4, 3), torch.nn.Conv2d(4, 4, 1), torch.nn.Linear(4, 4))
    strides = [p.stride() for p in model.parameters()]
    assert [p.stride() for p in prepare_model(model, "fp32").parameters()] == strides
    prepare_model(model, "bf16")
    assert model[0].weight.is_contiguous(memory_format=torch.channels_last_3d)
    assert model[1].weight.is_contiguous(memory_format=torch.channels_last)
    assert model[2].weight.stride() == strides[4]


def test_fp32_is_the_plain_forward_bit_for_bit(backbone):
    x = torch.randn(1, 3, 4, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        plain = backbone(x)
        prepare_model(backbone, "fp32")
        ours = run_backbone(backbone, x, "fp32")
    assert ours.dtype == torch.float32 and torch.equal(ours, plain)


def test_bf16_features_close_to_fp32(backbone):
    x = torch.randn(2, 3, 4, 32, 32, generator=torch.Generator().manual_seed(2))
    with torch.inference_mode():
        reference = backbone(x)
        reduced = run_backbone(prepare_model(damped_slowonly(), "bf16"), x, "bf16")
    assert reduced.dtype == torch.float32 and reduced.shape == reference.shape
    assert not torch.equal(reduced, reference)  # it really ran in bfloat16
    # per-RoI-like vectors: cosine of each spatial position's channel vector
    a = reference.permute(0, 2, 3, 4, 1).reshape(-1, reference.shape[1])
    b = reduced.permute(0, 2, 3, 4, 1).reshape(-1, reference.shape[1])
    assert F.cosine_similarity(a, b, dim=1).min() >= 0.999


def test_tuple_maps_come_back_as_float():
    class TwoPath(torch.nn.Module):
        def forward(self, x):
            return x[:, :, ::2] * 2, x * 3

    out = run_backbone(TwoPath(), torch.randn(1, 3, 4, 2, 2), "bf16")
    assert isinstance(out, tuple) and all(m.dtype == torch.float32 for m in out)


def test_recognizer_bf16_matches_fp32_top1_and_refuses_fp16_on_cpu(tmp_path):
    from typer.testing import CliRunner

    from lfbtool.cli import app
    from lfbtool.models.recognizer_factory import build_recognizer
    from lfbtool.testing.synthetic import synthetic_frames, write_frame_dir

    torch.manual_seed(0)
    fp32 = build_recognizer("r3d_18", num_classes=7).recognizer.eval()
    bf16 = build_recognizer("r3d_18", num_classes=7).recognizer.eval()
    bf16.load_state_dict(fp32.state_dict())
    bf16.set_precision("bf16")
    views = torch.randint(0, 256, (4, 3, 4, 32, 32), dtype=torch.uint8)
    with torch.no_grad():
        a, b = fp32(views), bf16(views)
    assert b.dtype == torch.float32 and torch.equal(a.argmax(1), b.argmax(1))
    assert torch.nn.functional.cosine_similarity(a, b).min() > 0.99
    checkpoint = tmp_path / "r3d.pth"
    torch.save(fp32.model.state_dict(), checkpoint)
    write_frame_dir(tmp_path / "clip", synthetic_frames(8, 32, 40, seed=1))
    result = CliRunner().invoke(app, ["recognize", str(tmp_path / "clip"), "--backbone", "r3d_18", "--checkpoint",
                                      str(checkpoint), "--precision", "fp16", "--device", "cpu", "--clip-len", "4"])
    assert result.exit_code != 0 and "--precision fp16 needs a CUDA device" in str(result.exception)


def test_resume_with_another_precision_is_refused(tiny_data, no_merge_run, tmp_path, capsys):
    """Features differ between precisions: a run's shards never continue under another one."""
    import shutil

    from tests.conftest import SEGMENT, run_in_process

    out = tmp_path / "out"
    shutil.copytree(no_merge_run.out, out)  # the shards of an fp32 run (default precision)
    again = run_in_process(tiny_data.extract_args(out, *SEGMENT, "--resume", "--precision", "bf16", "--device", "cpu"),
                           capsys)
    errors = [line for line in again.stderr.strip().splitlines() if not line.startswith("warning: ")]
    assert again.returncode == 2 and len(errors) == 1, again.stderr  # (a CPU without bf16 also warns)
    assert "refusing to resume with other settings" in again.stderr and "precision" in again.stderr
    assert not (out / "lfb_train.h5").exists()
    refused = run_in_process(tiny_data.extract_args(tmp_path / "o2", "--precision", "fp16", "--device", "cpu"), capsys)
    assert refused.returncode == 2 and "--precision fp16 needs a CUDA device" in refused.stderr


def test_auto_is_bf16_only_with_native_bf16_flags(monkeypatch):
    assert cpu_native_bf16(WITH_BF16) and not cpu_native_bf16(WITHOUT_BF16) and not cpu_native_bf16("")
    assert cpu_native_bf16("flags\t: avx2 avx512_bf16\n") and cpu_native_bf16("flags : amx_bf16\n")
    assert check_precision("auto", "cpu", cpuinfo=WITH_BF16) is Precision.bf16
    assert check_precision("auto", "cpu", cpuinfo=WITHOUT_BF16) is Precision.fp32
    assert check_precision(Precision.auto, torch.device("cpu"), cpuinfo=WITHOUT_BF16) is Precision.fp32
    # CUDA: compute capability 8.0 on computes bf16 natively; a V100 emulates it
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device", lambda device: contextlib.nullcontext())
    for native in (True, False):
        monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True, n=native: n)
        expected = Precision.bf16 if native else Precision.fp32
        assert check_precision("auto", "cuda:0", cpuinfo=WITHOUT_BF16) is expected
    with pytest.raises(ValueError, match="resolved with check_precision"):
        run_backbone(torch.nn.Identity(), torch.zeros(1), "auto")


def test_explicit_bf16_warns_only_without_native_bf16():
    warnings: list[str] = []
    assert check_precision("bf16", "cpu", cpuinfo=WITHOUT_BF16, warn=warnings.append) is Precision.bf16
    assert len(warnings) == 1 and "slower than fp32" in warnings[0] and "\n" not in warnings[0]
    check_precision("bf16", "cpu", cpuinfo=WITH_BF16, warn=warnings.append)
    check_precision("auto", "cpu", cpuinfo=WITHOUT_BF16, warn=warnings.append)
    check_precision("fp32", "cpu", cpuinfo=WITHOUT_BF16, warn=warnings.append)
    assert len(warnings) == 1


@pytest.mark.parametrize(("cpuinfo", "option", "recorded", "warned"), [
    (WITH_BF16, "auto", "bf16", False),
    (WITHOUT_BF16, "auto", "fp32", False),
    (WITHOUT_BF16, "bf16", "bf16", True),
], ids=["auto-with-flags", "auto-without-flags", "bf16-without-flags"])
def test_extract_records_the_concrete_precision(tiny_data, tmp_path, monkeypatch, cpuinfo, option, recorded, warned):
    """The bank's config and the summary hold what ran (auto resolved); fp32 banks leave it out, so an
    auto run that ran fp32 has the fingerprint of an fp32 run."""
    from typer.testing import CliRunner

    import lfbtool.runtime.precision
    from lfbtool.bank.inspect import inspect_bank
    from lfbtool.cli import app

    flags = tmp_path / "cpuinfo"
    flags.write_text(cpuinfo)
    monkeypatch.setattr(lfbtool.runtime.precision, "CPUINFO", flags)
    out = tmp_path / "out"
    result = CliRunner().invoke(app, tiny_data.extract_args(out, "--precision", option, "--device", "cpu"))
    assert result.exit_code == 0, result.output
    assert f"precision  {recorded}" in result.stdout
    assert ("warning: --precision bf16: this CPU has no native bf16" in result.stderr) is warned, result.stderr
    info = inspect_bank(out / "lfb_train.h5")
    assert info["config"].get("precision", "fp32") == recorded and "auto" not in str(info["config"].values())
    assert ("precision" in info["config"]) is (recorded != "fp32")


@pytest.mark.parametrize(("cpuinfo", "recorded"), [(WITH_BF16, "bf16"), (WITHOUT_BF16, "fp32")],
                         ids=["with-flags", "without-flags"])
def test_recognize_auto_records_the_concrete_precision(tmp_path, monkeypatch, cpuinfo, recorded):
    """The records' settings (and so the --resume fingerprint) hold what ran, never 'auto'."""
    import json

    from typer.testing import CliRunner

    import lfbtool.runtime.precision
    from lfbtool.cli import app
    from lfbtool.models.recognizer_factory import build_recognizer
    from lfbtool.testing.synthetic import synthetic_frames, write_frame_dir

    flags = tmp_path / "cpuinfo"
    flags.write_text(cpuinfo)
    monkeypatch.setattr(lfbtool.runtime.precision, "CPUINFO", flags)
    torch.manual_seed(0)
    checkpoint = tmp_path / "r3d.pth"
    torch.save(build_recognizer("r3d_18", num_classes=5).recognizer.model.state_dict(), checkpoint)
    write_frame_dir(tmp_path / "clip", synthetic_frames(8, 32, 40, seed=1))
    out = tmp_path / "records.jsonl"
    result = CliRunner().invoke(app, ["recognize", str(tmp_path / "clip"), "--backbone", "r3d_18", "--checkpoint",
                                      str(checkpoint), "--precision", "auto", "--device", "cpu", "--clip-len", "4",
                                      "--num-clips", "1", "--json", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert f"precision {recorded}" in result.stderr and "warning" not in result.stderr
    record = json.loads(out.read_text().splitlines()[0])
    assert record["settings"]["precision"] == recorded
