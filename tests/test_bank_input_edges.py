"""Hostile bank inputs (issue 20): non-finite features, float timestamps, pickles a bank cannot hold,
paths that are not bank files, no file descriptors left, box coordinates a rounding step outside
[0, 1]. Each refusal is one line (or one exception) naming the file and the key."""

from __future__ import annotations

import os
import pickle
import resource
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from lfbtool.bank.bank_file import BankFile
from lfbtool.bank.export import export_mmaction_pkl, export_npz_dir
from lfbtool.bank.reader import FeatureBank
from lfbtool.bank.verify import check_bank
from lfbtool.bank.writer import BankWriter
from lfbtool.data.ava import read_annotations, read_proposals
from lfbtool.errors import LfbError
from tests.test_faults import one_error_line
from tests.test_faults_outputs import run_main, temporaries

C = 4


def write_bank(path: Path, rows: dict[tuple[str, int], np.ndarray]) -> Path:
    with BankWriter(path, feature_dim=C, dtype="float16") as writer:
        for (video, ts), features in sorted(rows.items()):
            n = len(features)
            writer.append(video, ts, features, np.full((n, 4), 0.5), np.ones(n))
    return path


# --- non-finite features (item 2) -----------------------------------------------------------------


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_import_refuses_non_finite_features_naming_the_key(bad, tmp_path, monkeypatch, capsys) -> None:
    features = torch.ones(3, C)
    features[1, 2] = bad
    pkl = tmp_path / "lfb_train.pkl"
    torch.save({"v": {902: torch.ones(1, C), 903: features}}, pkl)
    done = run_main(monkeypatch, capsys, "import", str(pkl), "-o", str(tmp_path / "lfb_train.h5"))
    one_error_line(done, 2, str(pkl), "key v,0903", "NaN or Inf in feature vector 1")
    assert not (tmp_path / "lfb_train.h5").exists() and temporaries(tmp_path) == []


def test_reads_of_non_finite_rows_raise_as_verify_does(tmp_path) -> None:
    bad = np.ones((2, C), np.float16)
    bad[1, 0] = np.nan
    bank = write_bank(tmp_path / "lfb_train.h5", {("v", 902): np.ones((1, C)), ("v", 903): bad, ("w", 1): np.ones((1, C))})
    with pytest.raises(LfbError) as verified:
        check_bank(bank)
    message = str(verified.value)
    assert message == f"{bank}: key v,0903: /features row 2 holds NaN or Inf"
    with FeatureBank(bank) as reader:
        assert torch.equal(reader["v", 902], torch.ones(1, C, dtype=torch.float16))  # sound keys still read
        assert torch.equal(reader["w", 1], torch.ones(1, C, dtype=torch.float16))
        for read in (lambda: reader["v", 903], lambda: reader.get("v", 903, with_boxes=True),
                     lambda: reader.read_video("v"), lambda: reader.sample_window("v", 903, window_size=4)):
            with pytest.raises(LfbError) as caught:
                read()
            assert str(caught.value) == message
    for export, out in ((export_npz_dir, tmp_path / "npz"), (export_mmaction_pkl, tmp_path / "lfb.pkl")):
        with pytest.raises(LfbError, match="key v,0903: /features row 2 holds NaN or Inf"):
            export(bank, out)
        assert not out.exists()
    assert temporaries(tmp_path) == []


# --- timestamps are whole seconds (item 3) --------------------------------------------------------


def test_only_whole_second_timestamps_are_keys(tmp_path) -> None:
    rng = np.random.default_rng(0)
    rows = {("v", ts): rng.standard_normal((2, C)).astype(np.float16) for ts in (900, 901, 902, 903, 904)}
    bank_path = write_bank(tmp_path / "lfb_train.h5", rows)
    with FeatureBank(bank_path) as bank:
        expected = torch.from_numpy(rows["v", 902])
        for same in (902, np.int64(902), np.int32(902), 902.0, np.float32(902.0), "v,0902", ("v", "0902")):
            key = same if isinstance(same, (str, tuple)) else ("v", same)
            assert torch.equal(bank[key], expected), same
            assert key in bank
        for bad in (902.5, 902.0000001, np.float64(901.9), float("nan"), float("inf"), True, None, 2**40):
            with pytest.raises(KeyError, match="timestamp|whole seconds|not a bank key") as caught:
                bank["v", bad]
            assert isinstance(caught.value, LfbError) and repr(bad) in str(caught.value)
            assert ("v", bad) not in bank
            with pytest.raises(KeyError, match="whole seconds|int32"):
                bank.get("v", bad)
        assert "v,902.5" not in bank
        with pytest.raises(KeyError, match=r"timestamp 902\.7 is not a keyframe time"):
            bank.sample_window("v", 902.7, window_size=4)
        draws = [bank.sample_window("v", t, window_size=4, generator=torch.Generator().manual_seed(1)) for t in (902, 902.0)]
        assert torch.equal(draws[0], draws[1])
        assert torch.equal(draws[0][2 * 5 : 2 * 5 + 2], expected.float())  # slot of second 902 in a window from 900


# --- pickles a bank cannot hold, paths that are not banks (item 8) --------------------------------


@pytest.mark.parametrize(("content", "needle"), [
    ({"v": {2**40: torch.ones(1, C)}}, "timestamp 1099511627776 is outside the int32 range"),
    ({"v": {902: torch.ones(2, 0)}}, "key v,0902 holds features of length 0"),
    ({"v": {902: [torch.ones(0), torch.ones(0)]}}, "key v,0902 holds features of length 0"),
])
def test_import_of_what_a_bank_cannot_hold_is_one_line(content, needle, tmp_path, monkeypatch, capsys) -> None:
    pkl = tmp_path / "lfb_val.pkl"
    torch.save(content, pkl)
    done = run_main(monkeypatch, capsys, "import", str(pkl), "-o", str(tmp_path / "lfb_val.h5"))
    one_error_line(done, 2, str(pkl), needle)
    assert not (tmp_path / "lfb_val.h5").exists() and temporaries(tmp_path) == []


def test_a_directory_given_as_a_bank(tmp_path, monkeypatch, capsys) -> None:
    folder = tmp_path / "lfb_train.h5"  # (one directory alone is what `merge OUT` takes: an extract's OUT)
    folder.mkdir()
    for args in (["verify", str(folder)], ["inspect", str(folder)], ["merge", str(folder), str(folder), "-o", str(tmp_path / "m.h5")],
                 ["export", str(folder), "--format", "npz-dir", "-o", str(tmp_path / "n")]):
        one_error_line(run_main(monkeypatch, capsys, *args), 2, f"{folder}: is a directory, not a bank file")
    with pytest.raises(LfbError, match="is a directory, not a bank file"):
        FeatureBank(folder)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lfb_train.h5"]


def test_no_file_descriptors_left_is_said_so(tmp_path) -> None:
    bank = write_bank(tmp_path / "lfb_train.h5", {("v", 1): np.ones((1, C))})
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    opened: list[int] = []
    resource.setrlimit(resource.RLIMIT_NOFILE, (len(os.listdir("/proc/self/fd")) + 16, hard))
    try:
        with pytest.raises(OSError):
            while True:
                opened.append(os.open(os.devnull, os.O_RDONLY))
        with pytest.raises(LfbError) as caught:
            BankFile(bank)
    finally:
        for descriptor in opened:
            os.close(descriptor)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    assert str(caught.value) == f"{bank}: cannot open the bank (too many open files)"
    assert caught.value.exit_code == 1
    with h5py.File(bank, "r") as handle:  # the file itself was fine all along
        assert handle["features"].shape == (1, C)


def test_feature_bank_takes_bytes_paths_and_names_what_it_cannot_take(tmp_path) -> None:
    bank = write_bank(tmp_path / "lfb_train.h5", {("v", 1): np.ones((1, C))})
    for paths in (os.fsencode(bank), [os.fsencode(bank)]):
        with FeatureBank(paths) as reader:
            assert reader.paths == (bank,) and reader["v", 1].shape == (1, C)
    for bad in (5, [bank, 5], [None]):
        with pytest.raises(TypeError, match="FeatureBank takes a bank path or a list of bank paths, not"):
            FeatureBank(bad)


# --- box coordinates a rounding step outside [0, 1] (item 13) -------------------------------------


def test_boxes_within_the_tolerance_are_clipped_beyond_it_named_with_every_digit(tmp_path) -> None:
    csv = tmp_path / "ann.csv"
    csv.write_text("v,0902,0.1,0.2,1.00000001,0.5,1,0\nv,0903,-0.0000004,0.2,0.9999999,1.0000009,1,0\n")
    boxes = read_annotations(csv)
    assert boxes["v", 902].tolist() == [[np.float32(0.1), np.float32(0.2), 1.0, 0.5]]
    assert boxes["v", 903].tolist() == [[0.0, np.float32(0.2), np.float32(0.9999999), 1.0]]
    csv.write_text("v,0902,0.1,0.2,1.0000011,0.5,1,0\n")
    with pytest.raises(LfbError, match=r"row 1: box \[0\.1, 0\.2, 1\.0000011, 0\.5\]: x2 1\.0000011 is outside \[0, 1\]"):
        read_annotations(csv)
    # proposals as MMAction2 writes them (float32): whole-array path, and the key-by-key one ([n, 4] and [n, 5] mixed)
    step = np.nextafter(np.float32(1), np.float32(2))  # 1.0000001, one float32 step above 1
    usual = {f"v,{t:04d}": np.array([[0.1, 0.2, 0.5, 0.6, 0.9]], np.float32) for t in range(900, 910)}
    usual["v,0905"] = np.array([[0.1, 0.2, step, 0.6, 0.9], [0, 0, 1, 1, 0.5]], np.float32)
    for mixed in (False, True):
        data = {**usual, "v,0909": np.array([[0.1, 0.2, 0.3, 0.4]], np.float32)} if mixed else usual
        (tmp_path / "p.pkl").write_bytes(pickle.dumps(data, protocol=4))
        proposals = read_proposals(tmp_path / "p.pkl")
        assert proposals["v", 905].tolist() == [[np.float32(0.1), np.float32(0.2), 1.0, np.float32(0.6), np.float32(0.9)],
                                                [0, 0, 1, 1, 0.5]]
        assert proposals["v", 904].tolist() == usual["v,0904"].tolist()
    usual["v,0905"][0, 2] = np.float32(1.0000015)
    (tmp_path / "p.pkl").write_bytes(pickle.dumps(usual, protocol=4))
    with pytest.raises(LfbError, match=r"key 'v,0905' box 0: box \[0\.1, 0\.2, 1\.0000015, 0\.6\]: x2 1\.0000015 is outside"):
        read_proposals(tmp_path / "p.pkl")
