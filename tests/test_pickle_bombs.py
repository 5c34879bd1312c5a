"""Tiny hostile pickles (memory bombs, deep nesting) are refused with one line, fast, in little memory."""

from __future__ import annotations

import io
import resource
import zipfile
from pathlib import Path

import pytest
import torch

from lfbtool._io.safe_pickle import load_plain, torch_load
from lfbtool.errors import LfbError

try:
    from tests.test_mmengine_checkpoints import _torch_file
except ImportError:  # pytest run with tests/ (not the repo root) on sys.path
    from test_mmengine_checkpoints import _torch_file

TEN_GB = b"\x8a\x05" + (10**10).to_bytes(5, "little")  # LONG1 10**10


def _bytes(data: bytes) -> bytes:
    return b"B" + len(data).to_bytes(4, "little") + data


def _nested(opener: bytes, closer: bytes, n: int) -> bytes:
    return opener * n + closer * (n - 1)


def _str_data_copies(size: int, arrays: int) -> bytes:
    """One str of ``size`` characters as the data of ``arrays`` uint8 arrays: numpy encodes it for each."""
    state = b"(K\x01J" + size.to_bytes(4, "little") + b"\x85cnumpy\ndtype\n(X\x02\x00\x00\x00u1\x89\x88tR\x89h\x01tq\x030"
    return (
        b"X" + size.to_bytes(4, "little") + b"x" * size + b"q\x010"  # the str, memo 1
        + b"cnumpy.core.multiarray\n_reconstruct\nq\x020" + state  # memo 2 and 3
        + b"](" + b"h\x02(cnumpy\nndarray\nK\x00\x85C\x01btRh\x03b" * arrays + b"e"
    )


BOMBS = {
    "bytearray_10gb": b"cbuiltins\nbytearray\n(" + TEN_GB + b"tR",
    "bytes_10gb": b"cbuiltins\nbytes\n(" + TEN_GB + b"tR",
    "inst_bytearray_10gb": b"(" + TEN_GB + b"ibuiltins\nbytearray\n",
    "copies_of_one_bytes": _bytes(b"x" * 100_000) + b"q\x00" + b"(" + b"cbuiltins\nbytearray\n(h\x00tR" * 1000 + b"l",
    "list_copies": b"]q\x00(" + b"K\x01" * 50_000 + b"e0(" + b"cbuiltins\nlist\n(h\x00tR" * 300 + b"l",
    "numpy_reconstruct_huge": b"cnumpy.core.multiarray\n_reconstruct\n(cnumpy\nndarray\n(J\x00\xca\x9a;J\x00\xca\x9a;t"
    b"C\x01btR",
    "numpy_state_huge_objects": b"cnumpy.core.multiarray\n_reconstruct\n(cnumpy\nndarray\nK\x00\x85C\x01btR"
    b"(K\x01J\x00\xca\x9a;K\x10\x86cnumpy\ndtype\n(X\x02\x00\x00\x00O8K\x00K\x01tR(K\x03X\x01\x00\x00\x00|NNNJ"
    b"\xff\xff\xff\xffJ\xff\xff\xff\xffK?tb\x89]K\x01atb",
    "numpy_newobj": b"cnumpy\nndarray\n(J\x00\xca\x9a;J\x00\xca\x9a;t\x85\x81",
    # a float32 told it holds objects: numpy would take its numbers for pointers
    "numpy_forged_object_flags": b"cnumpy.core.multiarray\n_reconstruct\n(cnumpy\nndarray\nK\x00\x85C\x01btR(K\x01K\x01"
    b"\x85cnumpy\ndtype\n(X\x02\x00\x00\x00f4\x89\x88tR(K\x03X\x01\x00\x00\x00<NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK?tb"
    b"\x89]K\x01atb",
    "numpy_str_data_copies": _str_data_copies(200_000, 3000),
    "length_claim": b"\x8d" + (1 << 40).to_bytes(8, "little") + b"abc",
    "nested_lists": _nested(b"]", b"a", 100_000),
    "nested_tuples": b")" + b"\x85" * 100_000,
    "nested_dicts": b"}K\x01" * 100_000 + b"}" + b"s" * 100_000,
    "nested_by_memo_links": b"]q\x00" + b"".join(b"]r" + i.to_bytes(4, "little") + b"0" for i in range(1, 5000)) + b"".join(
        b"j" + i.to_bytes(4, "little") + b"j" + (i + 1).to_bytes(4, "little") + b"a0" for i in range(0, 4999)
    ) + b"h\x00",
}


def _check_refused(load, path: Path) -> str:
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(LfbError) as info:
        load(path)
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    message = str(info.value)
    assert "\n" not in message and str(path) in message, message
    assert grown_mb < 500, grown_mb
    return message


@pytest.mark.parametrize("bomb", sorted(BOMBS))
def test_bomb_refused_by_load_plain(tmp_path: Path, bomb: str) -> None:
    path = tmp_path / "bomb.pkl"
    path.write_bytes(b"\x80\x02" + BOMBS[bomb] + b".")
    _check_refused(load_plain, path)


@pytest.mark.parametrize("bomb", sorted(BOMBS))
def test_bomb_refused_by_torch_load(tmp_path: Path, bomb: str) -> None:
    path = _torch_file(tmp_path / "bomb.pth", BOMBS[bomb])
    _check_refused(lambda p: torch_load(p, allow_unknown_classes=True), path)


def test_deep_nesting_message() -> None:
    data = b"\x80\x02" + BOMBS["nested_lists"] + b"."
    with pytest.raises(LfbError, match=r"<stream>: refused to load: data nests deeper than 200 levels"):
        load_plain(io.BytesIO(data))
    assert load_plain(io.BytesIO(b"\x80\x02" + _nested(b"]", b"a", 150) + b".")) is not None  # within bounds


def test_huge_memo_index_allocates_nothing() -> None:
    assert load_plain(io.BytesIO(b"\x80\x02]r\xff\xff\xff\x7f.")) == []


def _rewrite(path: Path, change) -> None:
    with zipfile.ZipFile(path) as archive:
        entries = {n: archive.read(n) for n in archive.namelist()}
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in entries.items():
            name, data, method = change(name, data)
            archive.writestr(name, data, compress_type=method)
    path.write_bytes(buffer.getvalue())


def test_storage_claim_larger_than_file_refused(tmp_path: Path) -> None:
    path = tmp_path / "claim.pth"
    torch.save({"w": torch.ones(4)}, path)

    def claim(name: str, data: bytes):
        if name.endswith("data.pkl"):
            assert b"K\x04t" in data
            data = data.replace(b"K\x04t", b"J\x00\xca\x9a;t", 1)  # the storage's numel 4 -> 10**9
        return name, data, zipfile.ZIP_STORED

    _rewrite(path, claim)
    message = _check_refused(lambda p: torch_load(p, allow_unknown_classes=False), path)
    assert "storages claim" in message


def test_zip_bomb_entry_refused(tmp_path: Path) -> None:
    path = tmp_path / "zipbomb.pth"
    torch.save({"w": torch.ones(4)}, path)

    def inflate(name: str, data: bytes):
        if name.endswith("/data/0"):
            return name, b"\x00" * (64 << 20), zipfile.ZIP_DEFLATED
        return name, data, zipfile.ZIP_STORED

    _rewrite(path, inflate)
    message = _check_refused(lambda p: torch_load(p, allow_unknown_classes=False), path)
    assert "zip entries unpack" in message


@pytest.mark.parametrize("bomb", ["bytearray_10gb", "nested_lists", "numpy_state_huge_objects"])
def test_bomb_refused_by_mmaction_bank_import(tmp_path: Path, bomb: str) -> None:
    from lfbtool.bank.mmaction_import import import_mmaction_pkl

    path = _torch_file(tmp_path / "lfb_train.pkl", BOMBS[bomb])
    message = _check_refused(lambda p: import_mmaction_pkl(p, tmp_path / "out.h5"), path)
    assert "refused to load" in message
    assert not (tmp_path / "out.h5").exists()
