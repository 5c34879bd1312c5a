"""Export to MMAction2's pickle / npz files and import back: identical banks, refused pickles, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from lfbtool.bank.export import export_mmaction_pkl, export_npz_dir
from lfbtool.bank.mmaction_import import import_mmaction_pkl
from lfbtool.bank.reader import FeatureBank
from lfbtool.bank.writer import BankWriter
from lfbtool.cli import app
from lfbtool.errors import LfbError

C = 6
COUNTS = {("-5KQ66BBWC4", 902): 2, ("-5KQ66BBWC4", 903): 1, ("b", 902): 3, ("b", 905): 1, ("c", 1): 4}


def write_bank(path: Path, *, dtype: str = "float16", nan_boxes: bool = False) -> dict:
    rng = np.random.default_rng(0)
    written = {}
    with BankWriter(path, feature_dim=C, dtype=dtype, mode="train", config_json='{"clip_len": 4}') as writer:
        for key in sorted(COUNTS):
            n = COUNTS[key]
            feats = rng.standard_normal((n, C)).astype(dtype)
            boxes = np.full((n, 4), np.nan, np.float32) if nan_boxes else rng.random((n, 4), dtype=np.float32)
            scores = np.full(n, np.nan, np.float32) if nan_boxes else rng.random(n, dtype=np.float32)
            writer.append(*key, feats, boxes, scores)
            written[key] = feats
    return written


def datasets(path: Path) -> dict[str, np.ndarray]:
    with h5py.File(path, "r") as f:
        return {name: f[name][()] for name in f}


@pytest.mark.parametrize("dtype", ["float16", "float32"])
def test_pkl_roundtrip_gives_identical_bank(tmp_path: Path, dtype: str) -> None:
    bank_path = tmp_path / "lfb_train.h5"
    written = write_bank(bank_path, dtype=dtype, nan_boxes=True)
    pkl = tmp_path / "lfb_train.pkl"
    summary = export_mmaction_pkl(bank_path, pkl)
    assert (summary.videos, summary.keyframes, summary.rows) == (3, 5, 11)
    # what MMAction2's LFB loads: {video_id: {int timestamp: tensor[n, C]}}
    lfb = torch.load(pkl, weights_only=True)
    assert sorted(lfb) == ["-5KQ66BBWC4", "b", "c"] and sorted(lfb["b"]) == [902, 905]
    for (video, ts), feats in written.items():
        assert lfb[video][ts].dtype == getattr(torch, dtype)
        assert np.array_equal(lfb[video][ts].numpy(), feats)
    back = tmp_path / "back" / "lfb_train.h5"
    result = import_mmaction_pkl(pkl, back)
    assert (result.mode, result.dtype, result.feature_dim, result.rows) == ("train", dtype, C, 11)
    original, imported = datasets(bank_path), datasets(back)
    assert sorted(original) == sorted(imported)
    for name in original:
        assert original[name].dtype == imported[name].dtype, name
        assert np.array_equal(original[name], imported[name], equal_nan=name in ("boxes", "scores")), name
    with h5py.File(back, "r") as f:
        assert (f.attrs["feature_dim"], f.attrs["dtype"], f.attrs["mode"]) == (C, dtype, "train")
        assert json.loads(f.attrs["config"])["source"] == "mmaction2-pkl"


def test_import_drops_boxes_to_nan(tmp_path: Path) -> None:
    bank_path = tmp_path / "lfb_val.h5"
    write_bank(bank_path)
    export_mmaction_pkl(bank_path, tmp_path / "lfb_val.pkl")
    import_mmaction_pkl(tmp_path / "lfb_val.pkl", tmp_path / "out.h5")
    entry = FeatureBank(tmp_path / "out.h5").get("b", 902, with_boxes=True)
    assert torch.isnan(entry.boxes).all() and torch.isnan(entry.scores).all()
    assert FeatureBank(tmp_path / "out.h5").attrs[0]["mode"] == "val"


def test_import_lists_of_vectors_as_lfb_infer_head_writes(tmp_path: Path) -> None:
    rng = torch.Generator().manual_seed(0)
    vecs = [torch.randn(C, generator=rng).half() for _ in range(4)]
    # LFBInferHead's {video: {second: [tensor[C], ...]}}, seconds unordered; plus a [C] and an [n, C] value
    lfb = {"zz": {903: [vecs[2]], 902: [vecs[0], vecs[1]]}, "aa": {1: vecs[3], 7: torch.stack(vecs[:2])}}
    pkl = tmp_path / "lfb_test.pkl"
    torch.save(lfb, pkl)
    summary = import_mmaction_pkl(pkl, tmp_path / "lfb_test.h5")
    assert (summary.mode, summary.keyframes, summary.rows, summary.dtype) == ("test", 4, 6, "float16")
    bank = FeatureBank(tmp_path / "lfb_test.h5")
    assert bank.videos == ["aa", "zz"] and bank.timestamps("zz").tolist() == [902, 903]
    assert torch.equal(bank["zz", 902], torch.stack(vecs[:2]))
    assert torch.equal(bank["aa", 1], vecs[3][None])
    assert torch.equal(bank["aa,0007"], torch.stack(vecs[:2]))


class _RunsCode:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return (open, (str(self.marker), "w"))


def test_import_refuses_code_running_pickle(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    pkl = tmp_path / "lfb_train.pkl"
    torch.save({"v": {902: torch.zeros(1, C)}, "x": _RunsCode(marker)}, pkl)
    with pytest.raises(LfbError, match=r"lfb_train\.pkl: refused to load: this pickle would run code .*open"):
        import_mmaction_pkl(pkl, tmp_path / "out.h5")
    assert not marker.exists() and not (tmp_path / "out.h5").exists()


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ({"v": {1: torch.zeros(2, C), 2: torch.zeros(1, C + 1)}}, r"key v,0002 holds features of length 7"),
        ({"v": {1: torch.zeros(2, C, dtype=torch.float64)}}, r"key v,0001 holds dtype torch.float64"),
        ({"v": {1: torch.zeros(1, C), 2: torch.zeros(1, C).half()}}, r"key v,0002 holds dtype torch.float16"),
        ({"v": {1: [torch.zeros(2, C)]}}, r"key v,0001 holds a list that is not"),
        ({"v": {"x": torch.zeros(1, C)}}, r"timestamp 'x'"),
        ([torch.zeros(1, C)], r"not an MMAction2 bank"),
        ({}, r"holds no features"),
    ],
)
def test_import_rejects_malformed_banks(tmp_path: Path, content: object, message: str) -> None:
    pkl = tmp_path / "lfb_train.pkl"
    torch.save(content, pkl)
    with pytest.raises(LfbError, match=message):
        import_mmaction_pkl(pkl, tmp_path / "out.h5")
    assert not (tmp_path / "out.h5").exists()


def test_import_input_errors(tmp_path: Path) -> None:
    text = tmp_path / "lfb_train.pkl"
    text.write_text("not a pickle")
    with pytest.raises(LfbError, match=r"lfb_train\.pkl: cannot read as an MMAction2 bank"):
        import_mmaction_pkl(text, tmp_path / "out.h5")
    odd = tmp_path / "features.pkl"
    torch.save({"v": {1: torch.zeros(1, C)}}, odd)
    with pytest.raises(LfbError, match="pass --mode"):
        import_mmaction_pkl(odd, tmp_path / "out.h5")
    assert import_mmaction_pkl(odd, tmp_path / "out.h5", mode="val").mode == "val"
    with pytest.raises(LfbError, match="already exists"):
        import_mmaction_pkl(odd, tmp_path / "out.h5", mode="val")
    with pytest.raises(LfbError, match="no such file"):
        import_mmaction_pkl(tmp_path / "missing.pkl", tmp_path / "x.h5")


def test_export_npz_dir(tmp_path: Path) -> None:
    bank_path = tmp_path / "lfb_train.h5"
    written = write_bank(bank_path)
    out = tmp_path / "npz"
    summary = export_npz_dir(bank_path, out)
    assert summary.videos == 3 and sorted(p.name for p in out.iterdir()) == [
        "-5KQ66BBWC4.npz", "b.npz", "bank.json", "c.npz",
    ]
    with np.load(out / "b.npz") as npz:
        assert npz["timestamps"].tolist() == [902, 905] and npz["key_row_offsets"].tolist() == [0, 3, 4]
        assert np.array_equal(npz["features"][0:3], written[("b", 902)])
        assert np.array_equal(npz["features"][3:4], written[("b", 905)])
        assert npz["boxes"].shape == (4, 4) and npz["scores"].shape == (4,)
    manifest = json.loads((out / "bank.json").read_text())
    assert manifest["feature_dim"] == C and manifest["videos"] == ["-5KQ66BBWC4", "b", "c"]
    with pytest.raises(LfbError, match="already exists; pass --force"):
        export_npz_dir(bank_path, out)


def test_cli_export_import(tmp_path: Path) -> None:
    bank_path = tmp_path / "lfb_train.h5"
    write_bank(bank_path)
    runner = CliRunner()
    pkl = tmp_path / "lfb_train.pkl"
    result = runner.invoke(app, ["export", str(bank_path), "--format", "mmaction-pkl", "-o", str(pkl)])
    assert result.exit_code == 0, result.output
    assert "3 videos, 5 keyframes, 11 features" in result.output
    result = runner.invoke(app, ["import", str(pkl), "-o", str(tmp_path / "again.h5")])
    assert result.exit_code == 0, result.output
    assert torch.equal(FeatureBank(tmp_path / "again.h5")["c", 1], FeatureBank(bank_path)["c", 1])
    result = runner.invoke(app, ["export", str(bank_path), "--format", "npz-dir", "-o", str(tmp_path / "n")])
    assert result.exit_code == 0 and (tmp_path / "n" / "c.npz").is_file()
    result = runner.invoke(app, ["export", str(bank_path), "--format", "mmaction-pkl", "-o", str(pkl)])
    assert isinstance(result.exception, LfbError) and "--force" in str(result.exception)
