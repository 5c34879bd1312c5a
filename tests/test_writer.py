"""BankWriter: exact on-disk layout, key order, and no finished-looking file after a failure."""

from __future__ import annotations

import os
import socket

import h5py
import numpy as np
import pytest

from lfbtool.bank.writer import BankWriter
from lfbtool.errors import LfbError


def test_layout_is_exact(tmp_path):
    path = tmp_path / "lfb_train.h5"
    with BankWriter(path, feature_dim=2, dtype="float32", block_rows=2, config_fingerprint="fp") as writer:
        writer.append("a", 902, np.array([[1, 2], [3, 4]]), np.full((2, 4), 0.5), np.array([0.9, 0.95]))
        writer.append("a", 905, np.array([[5, 6]]), np.zeros((1, 4)), np.array([np.nan]))
        writer.append("b", 900, np.array([[7, 8], [9, 10], [11, 12]]), np.ones((3, 4)), np.ones(3))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lfb_train.h5"]
    with h5py.File(path) as f:
        assert f.attrs["format"] == "lfbtool-bank" and f.attrs["format_version"] == 2
        assert f.attrs["feature_dim"] == 2 and f.attrs["dtype"] == "float32" and f.attrs["config_fingerprint"] == "fp"
        assert [v.decode() for v in f["videos"][:]] == ["a", "b"]
        np.testing.assert_array_equal(f["video_key_offsets"][:], [0, 2, 3])
        np.testing.assert_array_equal(f["timestamps"][:], [902, 905, 900])
        np.testing.assert_array_equal(f["key_row_offsets"][:], [0, 2, 3, 6])
        np.testing.assert_array_equal(f["features"][:], np.arange(1, 13).reshape(6, 2))
        np.testing.assert_array_equal(f["scores"][:], np.array([0.9, 0.95, np.nan, 1, 1, 1], dtype=np.float32))
        assert f["features"].dtype == np.float32 and f["boxes"].shape == (6, 4)


def test_keys_out_of_order_are_refused(tmp_path):
    with pytest.raises(LfbError, match=r"key a,0901 arrives after a,0902"):
        with BankWriter(tmp_path / "x.h5", feature_dim=1) as writer:
            writer.append("a", 902, np.ones((1, 1)), np.zeros((1, 4)), np.ones(1))
            writer.append("a", 901, np.ones((1, 1)), np.zeros((1, 4)), np.ones(1))
    assert list(tmp_path.iterdir()) == []  # aborted: no temporary, no bank


def test_shape_mismatch_names_key(tmp_path):
    with pytest.raises(LfbError, match=r"key v,0007 has features of shape \(1, 3\), expected \(n, 2\)"):
        with BankWriter(tmp_path / "x.h5", feature_dim=2) as writer:
            writer.append("v", 7, np.ones((1, 3)), np.zeros((1, 4)), np.ones(1))
    assert list(tmp_path.iterdir()) == []


def test_unfinished_writer_leaves_only_a_temporary(tmp_path):
    writer = BankWriter(tmp_path / "lfb_train.h5", feature_dim=1)
    writer.append("a", 1, np.ones((1, 1)), np.zeros((1, 4)), np.ones(1))
    names = [p.name for p in tmp_path.iterdir()]
    assert names == [f"lfb_train.h5.tmp-{socket.gethostname()}-{os.getpid()}"]
    writer.abort()
    assert list(tmp_path.iterdir()) == []
