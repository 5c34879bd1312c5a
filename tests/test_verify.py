"""check_bank / `lfbtool verify`: a sound bank passes; each kind of damage is named, first problem first."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pytest
from typer.testing import CliRunner

from lfbtool.bank import format as fmt
from lfbtool.bank import verify as verify_mod
from lfbtool.bank.verify import check_bank
from lfbtool.bank.writer import BankWriter
from lfbtool.cli import app
from lfbtool.errors import LfbError

C = 8


def make_bank(path: Path, *, config: dict | None = None, nan_boxes: bool = False) -> Path:
    """Videos a (902: 2 rows, 903: 1 row) and b (1800: 3 rows): 3 keys, 6 rows."""
    rng = np.random.default_rng(0)
    boxes = np.full((3, 4), np.nan, np.float32) if nan_boxes else rng.uniform(0, 1, (3, 4))
    with BankWriter(path, feature_dim=C, config_json=json.dumps(config or {"backbone": "x"}),
                    config_fingerprint="f" * 16) as writer:
        writer.append("a", 902, rng.normal(size=(2, C)), boxes[:2], np.array([0.9, np.nan]))
        writer.append("a", 903, rng.normal(size=(1, C)), boxes[:1], np.array([0.95]))
        writer.append("b", 1800, rng.normal(size=(3, C)), boxes[:3], np.array([0.91, 0.92, 0.93]))
    return path


@pytest.fixture
def bank(tmp_path: Path) -> Path:
    return make_bank(tmp_path / "lfb_val.h5")


def replace(path: Path, name: str, data: np.ndarray | list) -> None:
    """Rewrite one dataset as a writer would have (index datasets keep a matching sha256 attribute)."""
    with h5py.File(path, "r+") as handle:
        del handle[name]
        if name == fmt.VIDEOS:
            written = handle.create_dataset(name, data=np.array(data, dtype=object), dtype=h5py.string_dtype("utf-8"))
            written.attrs[fmt.DIGEST_ATTR] = fmt.index_digest(list(data))
        else:
            written = handle.create_dataset(name, data=data)
            if name in fmt.INDEX_DATASETS:
                written.attrs[fmt.DIGEST_ATTR] = fmt.index_digest(np.asarray(data))


def set_rows(path: Path, name: str, row: int, value: float) -> None:
    with h5py.File(path, "r+") as handle:
        handle[name][row] = value


def test_sound_bank_passes_and_is_described(bank: Path) -> None:
    assert check_bank(bank).path == bank
    report = check_bank(bank)
    assert (report.videos, report.keys, report.rows, report.feature_dim, report.dtype) == (2, 3, 6, C, "float16")
    assert not report.imported


def test_cli_ok_line_and_exit_codes(bank: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    done = runner.invoke(app, ["verify", str(bank)])
    assert done.exit_code == 0, done.output
    assert done.output.startswith("ok: ") and "2 videos, 3 keyframes, 6 rows" in done.output
    set_rows(bank, fmt.FEATURES, 4, np.inf)
    done = runner.invoke(app, ["verify", str(bank)])
    assert isinstance(done.exception, LfbError) and done.exception.exit_code == 2  # main() exits with it
    assert "key b,1800" in str(done.exception) and "row 4" in str(done.exception)


def test_cli_one_error_line(bank: Path) -> None:
    import subprocess
    import sys

    set_rows(bank, fmt.SCORES, 0, np.inf)
    done = subprocess.run([sys.executable, "-m", "lfbtool", "verify", str(bank)], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 2
    assert done.stdout == "" and done.stderr.count("\n") == 1
    assert done.stderr.startswith("error: ") and "a,0902" in done.stderr and "/scores row 0" in done.stderr


def test_missing_and_not_hdf5(tmp_path: Path) -> None:
    with pytest.raises(LfbError, match="no such bank file"):
        check_bank(tmp_path / "nope.h5")
    (tmp_path / "x.h5").write_bytes(b"not hdf5 at all")
    with pytest.raises(LfbError, match="not readable as HDF5"):
        check_bank(tmp_path / "x.h5")


def test_truncated_file(bank: Path) -> None:
    data = bank.read_bytes()
    bank.write_bytes(data[: len(data) // 2])
    with pytest.raises(LfbError, match=str(bank)):
        check_bank(bank)


@pytest.mark.parametrize(("attr", "value", "message"), [
    ("format", "something-else", "not an lfbtool bank"),
    ("format_version", 3, "format_version 3 is newer"),
    ("format_version", 0, "invalid format_version 0"),
    ("dtype", "int8", "dtype attribute 'int8'"),
    ("feature_dim", C + 1, f"/features has {C} columns, feature_dim says {C + 1}"),
])
def test_bad_attributes(bank: Path, attr: str, value: object, message: str) -> None:
    with h5py.File(bank, "r+") as handle:
        handle.attrs[attr] = value
    with pytest.raises(LfbError, match=message):
        check_bank(bank)


def test_missing_dataset_and_row_counts(bank: Path, tmp_path: Path) -> None:
    with h5py.File(bank, "r+") as handle:
        del handle[fmt.TIMESTAMPS]
    with pytest.raises(LfbError, match="/timestamps is missing"):
        check_bank(bank)
    other = make_bank(tmp_path / "b.h5")
    replace(other, fmt.SCORES, np.zeros(5, np.float32))
    with pytest.raises(LfbError, match="row counts differ: /features 6, /boxes 6, /scores 5"):
        check_bank(other)


@pytest.mark.parametrize(("name", "data", "message"), [
    (fmt.VIDEO_KEY_OFFSETS, [0, 2], "has 2 entries, expected 3"),
    (fmt.VIDEO_KEY_OFFSETS, [1, 2, 3], "starts at 1"),
    (fmt.VIDEO_KEY_OFFSETS, [0, 0, 3], r"\[1\] = 0 after 0; offsets must strictly increase"),
    (fmt.VIDEO_KEY_OFFSETS, [0, 2, 2], r"\[2\] = 2 after 2"),
    (fmt.KEY_ROW_OFFSETS, [0, 2, 1, 6], r"\[2\] = 1 after 2; offsets must never decrease"),
    (fmt.KEY_ROW_OFFSETS, [0, 2, 3, 5], "ends at 5 but /features has 6"),
    (fmt.KEY_ROW_OFFSETS, [0, 2, 3], "has 3 entries, expected 4"),
])
def test_bad_offsets(bank: Path, name: str, data: list, message: str) -> None:
    replace(bank, name, np.array(data, np.int64))
    with pytest.raises(LfbError, match=message):
        check_bank(bank)


def test_unsorted_and_duplicate_videos(bank: Path, tmp_path: Path) -> None:
    replace(bank, fmt.VIDEOS, ["b", "a"])
    with pytest.raises(LfbError, match="'a' .entry 1. is out of order after 'b'"):
        check_bank(bank)
    other = make_bank(tmp_path / "c.h5")
    replace(other, fmt.VIDEOS, ["a", "a"])
    with pytest.raises(LfbError, match="'a' .entry 1. is twice"):
        check_bank(other)


def test_timestamps_must_increase_within_a_video(bank: Path, tmp_path: Path) -> None:
    replace(bank, fmt.TIMESTAMPS, np.array([903, 902, 1800], np.int32))
    with pytest.raises(LfbError, match="key a,0902 follows a,0903"):
        check_bank(bank)
    other = make_bank(tmp_path / "d.h5")
    replace(other, fmt.TIMESTAMPS, np.array([902, 902, 10], np.int32))  # b may start lower than a ends
    with pytest.raises(LfbError, match="key a,0902 follows a,0902"):
        check_bank(other)
    third = make_bank(tmp_path / "e.h5")
    replace(third, fmt.TIMESTAMPS, np.array([902, 903, 10], np.int32))
    check_bank(third)


@pytest.mark.parametrize(("row", "value", "key"), [(0, np.nan, "a,0902"), (2, -np.inf, "a,0903"), (5, np.nan, "b,1800")])
def test_nan_inf_features_name_the_key(bank: Path, row: int, value: float, key: str) -> None:
    set_rows(bank, fmt.FEATURES, row, value)
    with pytest.raises(LfbError, match=f"key {key}: /features row {row} holds NaN or Inf"):
        check_bank(bank)


def test_scan_is_blockwise_and_reports_the_first_bad_row(bank: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(verify_mod, "SCAN_BYTES", 1)  # blocks of FEATURE_CHUNK_ROWS rows
    monkeypatch.setattr(verify_mod.fmt, "FEATURE_CHUNK_ROWS", 2)
    set_rows(bank, fmt.FEATURES, 5, np.nan)
    set_rows(bank, fmt.FEATURES, 3, np.nan)
    with pytest.raises(LfbError, match="key b,1800: /features row 3"):
        check_bank(bank)


def test_boxes_nan_only_in_imported_banks(tmp_path: Path) -> None:
    plain = make_bank(tmp_path / "plain.h5", nan_boxes=True)
    with pytest.raises(LfbError, match="/boxes row 0 holds NaN or Inf .only banks imported"):
        check_bank(plain)
    imported = make_bank(tmp_path / "imported.h5", config={"source": "mmaction2-pkl"}, nan_boxes=True)
    assert check_bank(imported).imported
    set_rows(imported, fmt.BOXES, 1, np.inf)
    with pytest.raises(LfbError, match="/boxes row 1 holds NaN or Inf"):
        check_bank(imported)


def test_merged_bank_verifies(tmp_path: Path) -> None:
    """A merge of two banks verifies too (keys interleave across the inputs)."""
    from lfbtool.bank.merge import merge_banks

    rng = np.random.default_rng(1)
    paths = []
    for i, videos in enumerate((("a", "c"), ("b", "d"))):
        path = tmp_path / f"in{i}.h5"
        with BankWriter(path, feature_dim=C, config_fingerprint="f" * 16) as writer:
            for video in videos:
                for ts in (902, 905):
                    writer.append(video, ts, rng.normal(size=(2, C)), rng.uniform(0, 1, (2, 4)), np.ones(2))
        paths.append(path)
    merged = merge_banks(paths, tmp_path / "out.h5").output
    report = check_bank(merged)
    assert (report.videos, report.keys, report.rows) == (4, 8, 16)
