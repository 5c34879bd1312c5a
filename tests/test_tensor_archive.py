"""The torch-free reader of torch.save archives (``lfbtool import``): the values torch.load gives,
and every tensor kept inside its storage."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from lfbtool.bank.mmaction_import import import_mmaction_pkl
from lfbtool.bank.tensor_archive import StoredTensor, load_tensor_archive
from lfbtool.errors import LfbError


def _rewrite(path: Path, change) -> None:
    with zipfile.ZipFile(path) as archive:
        entries = {n: archive.read(n) for n in archive.namelist()}
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in entries.items():
            archive.writestr(name, change(name, data))
    path.write_bytes(buffer.getvalue())


def test_values_equal_torch_load_for_views_offsets_and_dtypes(tmp_path: Path) -> None:
    g = torch.Generator().manual_seed(0)
    base = torch.randn(6, 10, generator=g)
    content = {
        "views": [base[1:3], base[:, ::3], base.t()[2:5]],  # one storage: offsets and strides
        "half": {902: torch.randn(3, 4, generator=g).half(), 903: torch.randn(4, generator=g).half()},
        "other": (torch.arange(5), torch.tensor([True, False]), torch.zeros(0, 4), torch.tensor(2.5)),
        "plain": {"n": 3, "s": "x", "f": [1.5, None]},
    }
    path = tmp_path / "t.pth"
    torch.save(content, path)
    expected = torch.load(path, weights_only=True)
    loaded = load_tensor_archive(path)

    def same(ours, theirs) -> None:
        if isinstance(theirs, torch.Tensor):
            assert isinstance(ours, StoredTensor) and ours.dtype == str(theirs.dtype)
            assert ours.shape == tuple(theirs.shape) and np.array_equal(ours.array, theirs.numpy())
        elif isinstance(theirs, dict):
            assert ours.keys() == theirs.keys()
            for key in theirs:
                same(ours[key], theirs[key])
        elif isinstance(theirs, (list, tuple)):
            assert type(ours) is type(theirs) and len(ours) == len(theirs)
            for a, b in zip(ours, theirs, strict=True):
                same(a, b)
        else:
            assert ours == theirs

    same(loaded, expected)
    assert not loaded["views"][0].array.flags.writeable


def test_bfloat16_has_no_array_and_is_refused_by_import(tmp_path: Path) -> None:
    path = tmp_path / "lfb_train.pkl"
    torch.save({"v": {1: torch.zeros(2, 4, dtype=torch.bfloat16)}}, path)
    stored = load_tensor_archive(path)["v"][1]
    assert (stored.dtype, stored.shape, stored.array) == ("torch.bfloat16", (2, 4), None)
    with pytest.raises(LfbError, match=r"key v,0001 holds dtype torch.bfloat16; a bank stores float16 or float32"):
        import_mmaction_pkl(path, tmp_path / "out.h5")


def test_tensor_reaching_past_its_storage_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "lfb_train.pkl"
    torch.save({"v": {1: torch.ones(2, 6)}}, path)

    def grow(name: str, data: bytes) -> bytes:
        if name.endswith("data.pkl"):
            assert data.count(b"K\x02K\x06\x86") == 1
            return data.replace(b"K\x02K\x06\x86", b"M\x00\x01K\x06\x86")  # size (2, 6) -> (256, 6)
        return data

    _rewrite(path, grow)
    with pytest.raises(LfbError, match=r"lfb_train\.pkl: refused to load: a tensor of size \(256, 6\) reaches past "
                                       r"its storage of 12 items"):
        import_mmaction_pkl(path, tmp_path / "out.h5")
    assert not (tmp_path / "out.h5").exists()


def test_storage_entry_of_another_length_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "t.pth"
    torch.save({"w": torch.ones(4)}, path)
    _rewrite(path, lambda name, data: data[:8] if name.endswith("/data/0") else data)
    with pytest.raises(LfbError, match=r"refused to load: storage '0' holds 8 bytes, its id says 16"):
        load_tensor_archive(path)


def test_legacy_torch_file_is_imported_through_torch(tmp_path: Path) -> None:
    """A file saved as torch did before 1.6 (not a zip) still imports, with the same values."""
    from lfbtool.bank.reader import FeatureBank

    features = torch.randn(3, 4, generator=torch.Generator().manual_seed(1)).half()
    path = tmp_path / "lfb_val.pkl"
    torch.save({"v": {902: features[:2], 903: [features[2]]}}, path, _use_new_zipfile_serialization=False)
    assert not zipfile.is_zipfile(path)
    summary = import_mmaction_pkl(path, tmp_path / "lfb_val.h5")
    assert (summary.mode, summary.keyframes, summary.rows, summary.dtype) == ("val", 2, 3, "float16")
    with FeatureBank(tmp_path / "lfb_val.h5") as bank:
        assert torch.equal(bank["v", 902], features[:2]) and torch.equal(bank["v", 903], features[2:])
