"""``lfbtool diff``: two banks compared key by key; the figures checked against numbers worked out by hand."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from lfbtool.bank.diff import diff_banks
from lfbtool.bank.writer import BankWriter
from lfbtool.cli import app
from lfbtool.errors import LfbError

C = 4
BOX = [0.1, 0.2, 0.6, 0.9]
# video -> timestamp -> feature rows; every row gets BOX and score 0.9
BASE = {
    "v1": {902: [[1, 2, 3, 4], [0, 1, 0, 1]], 903: [[2, 2, 2, 2]]},
    "v2": {902: [[1, 0, 0, 0], [0, 0, 0, 0], [3, 4, 0, 0]]},
}


def write(path: Path, keys: dict[str, dict[int, list[list[float]]]], *, dim: int = C, dtype: str = "float32",
          boxes: dict[tuple[str, int], list[list[float]]] | None = None) -> Path:
    with BankWriter(path, feature_dim=dim, dtype=dtype, mode="val", config_json="{}", config_fingerprint="t") as w:
        for video in sorted(keys):
            for ts, rows in sorted(keys[video].items()):
                box = (boxes or {}).get((video, ts), [BOX] * len(rows))
                w.append(video, ts, np.asarray(rows, dtype=np.float32).reshape(-1, dim), np.float32(box),
                         np.full(len(rows), 0.9, np.float32))
    return path


def run(*args) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["diff", *map(str, args)], terminal_width=200)
    if isinstance(result.exception, LfbError):
        return result.exception.exit_code, str(result.exception)
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result.exit_code, result.output


def test_identical_banks(tmp_path):
    a, b = write(tmp_path / "a.h5", BASE), write(tmp_path / "b.h5", BASE)
    code, out = run(a, b)
    assert code == 0
    assert out.splitlines() == [
        f"{a} vs {b}: identical", "keys: 3 in a.h5, 3 in b.h5",
        "features: 6 rows compared, 6 equal; |diff| max 0, mean 0; cosine min 1, mean 1"]
    diff = diff_banks(a, b)
    assert diff.identical and diff.rows_compared == 6 and diff.cosine_min == 1.0


def test_one_changed_row_by_hand(tmp_path):
    a = write(tmp_path / "a.h5", BASE)
    b = write(tmp_path / "b.h5", _one_row_changed())
    diff = diff_banks(a, b)
    # row [1, 2, 3, 4] -> [1, 2, 3, 6]: |diff| 2 in one of 6 rows x 4 = 24 elements
    cos = 38 / math.sqrt(30 * 50)  # (1 + 4 + 9 + 24) / (|a| |b|) = 0.98115578...
    assert (diff.rows_compared, diff.rows_equal) == (6, 5)
    assert diff.feature_max_abs == 2.0 and diff.feature_mean_abs == pytest.approx(2 / 24, abs=1e-15)
    assert diff.cosine_min == pytest.approx(cos, abs=1e-12)
    assert diff.cosine_mean == pytest.approx((5 + cos) / 6, abs=1e-12)
    assert not diff.identical and not diff.only_in_a and not diff.row_counts and not diff.boxes_differ
    code, out = run(a, b, "--json")
    assert code == 1 and json.loads(out)["feature_max_abs"] == 2.0 and json.loads(out)["identical"] is False
    code, out = run(a, b)
    assert code == 1 and out.splitlines()[-1] == (
        "features: 6 rows compared, 5 equal; |diff| max 2, mean 0.0833333; cosine min 0.981155781, mean 0.996859297")
    assert run(a, b, "--atol", "2")[0] == 0  # within tolerance counts as the same
    code, out = run(a, b, "--atol", "1.5")
    assert code == 1


def _one_row_changed() -> dict[str, dict[int, list[list[float]]]]:
    keys = {video: {ts: [list(r) for r in rows] for ts, rows in by_ts.items()} for video, by_ts in BASE.items()}
    keys["v1"][902][0] = [1, 2, 3, 6]
    return keys


def test_missing_keys_and_row_counts(tmp_path):
    a = write(tmp_path / "a.h5", BASE)
    other = _one_row_changed()
    other["v1"][902] = other["v1"][902][:1]  # 2 rows -> 1
    del other["v1"][903]
    other["v3"] = {905: [[1, 1, 1, 1]]}
    b = write(tmp_path / "b.h5", other)
    diff = diff_banks(a, b)
    assert diff.only_in_a == ["v1,0903"] and diff.only_in_b == ["v3,0905"]
    assert diff.row_counts == [("v1,0902", 2, 1)]
    assert diff.rows_compared == 3 and diff.rows_equal == 3  # only v2,0902 pairs its rows
    code, out = run(a, b)
    assert code == 1
    assert out.splitlines()[1:] == [
        "keys: 3 in a.h5, 3 in b.h5", "only in a.h5: 1 key: v1,0903", "only in b.h5: 1 key: v3,0905",
        "rows: 1 shared key with another row count: v1,0902 (2 vs 1)",
        "features: 3 rows compared, 3 equal; |diff| max 0, mean 0; cosine min 1, mean 1"]


def test_different_boxes(tmp_path):
    a = write(tmp_path / "a.h5", BASE)
    moved = [BOX, [0.1, 0.2, 0.65, 0.9]]
    b = write(tmp_path / "b.h5", BASE, boxes={("v1", 902): moved})
    diff = diff_banks(a, b)
    assert diff.boxes_differ == ["v1,0902"] and not diff.scores_differ
    assert diff.box_max_abs == float(np.float32(0.65)) - float(np.float32(0.6))  # 0.05 as float32 holds it
    assert diff.feature_max_abs == 0 and not diff.identical
    code, out = run(a, b)
    assert code == 1 and "boxes: 1 key with other boxes (max |diff| 0.05): v1,0902" in out.splitlines()


def test_different_feature_dims_is_one_line(tmp_path):
    a = write(tmp_path / "a.h5", BASE)
    b = write(tmp_path / "b.h5", {"v1": {902: [[1] * 8]}}, dim=8)
    code, out = run(a, b)
    assert code == 1 and out.splitlines() == [f"{a} vs {b}: differ: 4-d features against 8-d; nothing else compared"]


def test_bad_input_is_exit_2(tmp_path):
    a = write(tmp_path / "a.h5", BASE)
    junk = tmp_path / "junk.h5"
    junk.write_text("not hdf5")
    code, message = run(a, junk)
    assert code == 2 and str(junk) in message and "\n" not in message
    code, message = run(a, tmp_path / "missing.h5")
    assert code == 2 and message == f"{tmp_path / 'missing.h5'}: no such bank file"
    code, message = run(a, a, "--atol", "-1")
    assert code == 2 and "--atol" in message


def test_same_file_names_print_their_paths_and_fp16_against_fp32(tmp_path):
    (tmp_path / "one").mkdir()
    (tmp_path / "two").mkdir()
    a = write(tmp_path / "one" / "lfb_val.h5", BASE)
    b = write(tmp_path / "two" / "lfb_val.h5", BASE, dtype="float16")  # these values are exact in fp16
    code, out = run(a, b)
    assert code == 1  # same numbers, other dtype: not identical
    assert out.splitlines()[1:3] == [f"dtype: float32 in {a}, float16 in {b}", f"keys: 3 in {a}, 3 in {b}"]
    assert diff_banks(a, b).feature_max_abs == 0
