"""The fast path of load_plain (C unpickler behind guards, after an opcode scan): what it loads equals
``pickle.load``, and what it cannot bound goes to the bounded unpickler."""

from __future__ import annotations

import collections
import io
import pickle
import pickletools
import random
import re
import resource
from pathlib import Path

import numpy as np
import pytest

from lfbtool._io import pickle_fast
from lfbtool._io.pickle_bounds import BoundedUnpickler
from lfbtool._io.safe_pickle import load_plain
from lfbtool.data._proposals_fast import proposals_at_once as _proposals_at_once
from lfbtool.data.ava import _proposals_one_by_one, read_proposals
from lfbtool.errors import LfbError


def _proposals(videos: int = 3, seconds: int = 12, seed: int = 0) -> dict[str, np.ndarray]:
    """MMAction2's layout: "<video>,<0902..>" -> float32 [n, 5], 5-25 boxes, corners in order."""
    rng = np.random.default_rng(seed)
    out = {}
    for video in range(videos):
        for ts in range(902, 902 + seconds):
            corners = np.sort(rng.random((int(rng.integers(5, 26)), 2, 2), dtype=np.float32), axis=1)
            score = rng.random((len(corners), 1), dtype=np.float32)
            out[f"vid{video:02d}_x,{ts:04d}"] = np.concatenate([corners[:, 0], corners[:, 1], score], axis=1)
    return out


def _same(expected: object, loaded: object) -> None:
    assert type(loaded) is type(expected)
    if isinstance(expected, np.ndarray):
        assert loaded.dtype == expected.dtype and loaded.shape == expected.shape
        assert loaded.tobytes() == expected.tobytes()
    elif isinstance(expected, dict):
        assert list(loaded) == list(expected)
        for key in expected:
            _same(expected[key], loaded[key])
    elif isinstance(expected, (list, tuple)):
        assert len(loaded) == len(expected)
        for a, b in zip(expected, loaded, strict=True):
            _same(a, b)
    else:
        assert loaded == expected


@pytest.fixture
def no_bounded_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """The bounded unpickler fails if used: what loads went through the fast path."""

    def refuse(self: BoundedUnpickler) -> None:
        raise AssertionError("the bounded unpickler was used")

    monkeypatch.setattr(BoundedUnpickler, "load", refuse)


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
def test_proposals_equal_pickle_load(tmp_path: Path, no_bounded_path: None, protocol: int) -> None:
    path = tmp_path / "proposals.pkl"
    path.write_bytes(pickle.dumps(_proposals(), protocol=protocol))
    _same(pickle.loads(path.read_bytes()), load_plain(path))


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
def test_plain_data_equals_pickle_load(no_bounded_path: None, protocol: int) -> None:
    data = {
        "ints": [0, -1, 255, 65536, 2**31, -(2**70), 10**40], "floats": (1.5, float("inf"), -0.0),
        "text": ["", "é" * 300, "x" * 70_000], "bytes": [b"", b"r\xff\xff\xff\x7f", bytes(range(256)) * 5],
        "bytearray": bytearray(b"ab"), "set": {1, 2}, "frozen": frozenset({"x"}), "none": None, "flags": [True, False],
        "ordered": collections.OrderedDict(b=1, a=2), "complex": 1 + 2j,
        "arrays": [np.arange(6, dtype=np.int64).reshape(2, 3), np.zeros((0, 5), np.float32), np.ones(3, np.uint8),
                   np.asfortranarray(np.arange(6.0).reshape(2, 3)), np.arange(400, dtype=np.float64)],
        "scalars": [np.float32(0.25), np.int64(-3), np.bool_(True)], "dtypes": [np.dtype("float16"), np.dtype("i8")],
        "shared": [[1, 2]] * 3, "nested": [[[[("deep",)]]]],
    }
    _same(pickle.loads(pickle.dumps(data, protocol=protocol)), load_plain(io.BytesIO(pickle.dumps(data, protocol))))


@pytest.mark.parametrize("protocol", [0, 2, 5])
def test_what_the_fast_path_leaves_loads_through_the_bounded_one(protocol: int) -> None:
    """Big-endian arrays (numpy's singleton dtypes cannot carry the byte order), object arrays, structured
    dtypes and protocol 0 are left to the bounded unpickler, with the same result as pickle.load."""
    data = {"big": np.arange(6, dtype=">f4").reshape(2, 3), "object": np.array([1, "x", None], dtype=object),
            "record": np.zeros(2, dtype=[("a", "f4"), ("b", "i2")]), "text": np.array(["ab", "c"])}
    raw = pickle.dumps(data, protocol=protocol)
    with pytest.raises(pickle_fast.Unsupported):
        pickle_fast.load(raw)
    loaded, expected = load_plain(io.BytesIO(raw)), pickle.loads(raw)
    assert np.array_equal(loaded["big"], data["big"]) and loaded["big"].dtype == expected["big"].dtype
    assert list(loaded["object"]) == [1, "x", None]
    assert loaded["record"].dtype == data["record"].dtype and loaded["text"].tolist() == ["ab", "c"]


def _random_tree(rng: random.Random, depth: int = 0) -> object:
    """Nested containers whose payloads hold bytes that look like opcodes (LONG_BINPUT, PUT, STOP)."""
    if depth < 3 and rng.random() < 0.5:
        kind = rng.choice(["list", "tuple", "dict"])
        items = [_random_tree(rng, depth + 1) for _ in range(rng.randint(0, 6))]
        if kind == "dict":
            return {f"k{i}": item for i, item in enumerate(items)}
        return items if kind == "list" else tuple(items)
    size = rng.choice([0, 2, 3, 40, 255, 256, 300, 1023, 1024, 1500])
    junk = bytes(rng.choice(b"r\xff\x7f\x00p.\x94hqj(") for _ in range(size))
    return rng.choice([
        junk, junk.decode("latin-1") + "x", rng.randint(-(2**40), 2**40), rng.random(), None,
        np.frombuffer(junk[: size - size % 4] or b"\0\0\0\0", np.float32).copy(), bytearray(junk),
    ])


@pytest.mark.parametrize("wide", [False, True])
def test_scan_finds_every_memo_index_however_payloads_look(monkeypatch: pytest.MonkeyPatch, wide: bool) -> None:
    """A LONG_BINPUT index sizes the C unpickler's memo: the scan must read every opcode boundary (never
    a payload byte) to refuse a big one, whatever bytes the payloads hold. ``wide``: the regex that
    also matches 4- and 8-byte lengths (files from 1 MB on)."""
    monkeypatch.setattr(pickle_fast, "_WIDE_FROM", 0 if wide else 1 << 62)
    rng = random.Random(5)
    for _ in range(30):
        raw = pickle.dumps(_random_tree(rng), protocol=rng.choice([2, 3, 4, 5]))
        pickle_fast.scan(raw)  # accepted: no payload byte was taken for an opcode
        boundaries = [pos for _, _, pos in pickletools.genops(raw)][1:]
        at = rng.choice(boundaries)
        big = raw[:at] + b"Nr" + (1 << 28).to_bytes(4, "little") + b"0" + raw[at:]  # NONE, LONG_BINPUT, POP
        with pytest.raises(pickle_fast.Unsupported):
            pickle_fast.scan(big)
        with pytest.raises(pickle_fast.Unsupported):  # PUT's index is decimal text: never in the profile
            pickle_fast.scan(raw[:at] + b"Np7\n0" + raw[at:])
        pickle_fast.scan(raw[:at] + b"Nr" + (9).to_bytes(4, "little") + b"0" + raw[at:])  # a small index is fine


@pytest.mark.parametrize("index", [0x10000000, 0x7FFFFFFF])
def test_memo_index_allocates_nothing(index: int) -> None:
    """The C unpickler would zero-fill a memo of 2 x index pointers (4 GB for 2**28)."""
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    assert load_plain(io.BytesIO(b"\x80\x02]r" + index.to_bytes(4, "little") + b".")) == []
    assert (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024 < 100


def test_self_reference_refused(tmp_path: Path) -> None:
    loop: list = []
    loop.append(loop)
    path = tmp_path / "loop.pkl"
    path.write_bytes(pickle.dumps({"vid,0902": loop}, protocol=4))
    with pytest.raises(LfbError) as info:
        load_plain(path)
    assert str(path) in str(info.value) and "refers back to itself" in str(info.value)


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_proposals_checked_at_once_equal_key_by_key(tmp_path: Path, protocol: int) -> None:
    proposals = _proposals(videos=2, seconds=30, seed=protocol)
    proposals["vid01_x,0931"] = np.array([[0, 0, 1, 1, 7]], dtype=np.int64)  # integers: converted to float32
    path = tmp_path / "p.pkl"
    path.write_bytes(pickle.dumps(proposals, protocol=protocol))
    data = load_plain(path)
    fast = _proposals_at_once(data)
    assert fast is not None
    slow = _proposals_one_by_one(path, data)
    assert list(fast) == list(slow) == [(k.split(",")[0], int(k.split(",")[1])) for k in proposals]
    for key in slow:
        assert fast[key].dtype == slow[key].dtype == np.float32 and np.array_equal(fast[key], slow[key])
    assert list(read_proposals(path)) == list(slow)


def test_bank_archive_takes_the_fast_path(tmp_path: Path, no_bounded_path: None) -> None:
    """An MMAction2 bank (LFBInferHead's lists of row views of one batch) loads without the bounded
    unpickler, with torch.load's values."""
    import torch

    from lfbtool.bank.tensor_archive import load_tensor_archive

    g = torch.Generator().manual_seed(0)
    bank = {f"vid{v}": {ts: list(torch.randn(1 + ts % 3, 8, generator=g).half()) for ts in range(902, 910)}
            for v in range(3)}
    torch.save(bank, tmp_path / "lfb_train.pkl")
    expected = torch.load(tmp_path / "lfb_train.pkl", weights_only=True)
    loaded = load_tensor_archive(tmp_path / "lfb_train.pkl")
    assert list(loaded) == list(expected)
    for video, seconds in expected.items():
        assert list(loaded[video]) == list(seconds)
        for ts, rows in seconds.items():
            assert [r.dtype for r in loaded[video][ts]] == ["torch.float16"] * len(rows)
            assert all(np.array_equal(a.array, b.numpy()) for a, b in zip(loaded[video][ts], rows, strict=True))


def _archive_with_prefix(path: Path, prefix: bytes) -> Path:
    """A torch.save file of one strided tensor (a view that is not a plain slice), ``prefix`` run first."""
    import zipfile

    import torch

    torch.save({"w": torch.ones(4, 2).t()}, path)
    with zipfile.ZipFile(path) as archive:
        entries = {name: archive.read(name) for name in archive.namelist()}
    name = next(n for n in entries if n.endswith("/data.pkl"))
    entries[name] = entries[name][:2] + prefix + entries[name][2:]
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as archive:
        for entry, data in entries.items():
            archive.writestr(entry, data)
    return path


F4 = b"cnumpy\ndtype\n(X\x02\x00\x00\x00f4\x89\x88tR"
HOSTILE_ARCHIVE = {
    # torch.FloatStorage's stand-in given float64 items before the float32 storage is read
    "storage_type": (b"ctorch\nFloatStorage\n}X\x0b\x00\x00\x00numpy_dtypecnumpy\ndtype\nX\x02\x00\x00\x00f8"
                     b"\x89\x88\x87Rsb0", "sets the state of a _StorageType"),
    # the storage the tensor will view, its 8 items swapped for 1 (numel still says 8)
    "storage": (b"(X\x07\x00\x00\x00storagectorch\nFloatStorage\nX\x01\x00\x00\x000X\x03\x00\x00\x00cpuK\x08tQ"
                b"(ctorch\nFloatStorage\nK\x08cnumpy._core.numeric\n_frombuffer\n(C\x04\x00\x00\x00\x00" + F4
                + b"K\x01\x85X\x01\x00\x00\x00CtRtb0", "sets the state of a _Storage"),
}


@pytest.mark.parametrize("variant", sorted(HOSTILE_ARCHIVE))
def test_archive_state_set_on_reader_objects_refused(tmp_path: Path, variant: str) -> None:
    """A BUILD on what the reader hands out could make a tensor view read past its storage: refused,
    whichever unpickler meets it."""
    from lfbtool.bank.tensor_archive import load_tensor_archive

    prefix, words = HOSTILE_ARCHIVE[variant]
    path = _archive_with_prefix(tmp_path / "lfb_train.pkl", prefix)
    with pytest.raises(LfbError) as info:
        load_tensor_archive(path)
    assert str(path) in str(info.value) and words in str(info.value)


def _with(proposals: dict[str, np.ndarray], key: str, row: list[float], dtype: type = np.float32) -> dict:
    """``proposals`` with ``row`` appended to the boxes of ``key`` (key order kept)."""
    out = dict(proposals)
    out[key] = np.concatenate([out[key], np.array([row], dtype)]).astype(dtype)
    return out


@pytest.mark.parametrize(
    "variant",
    ["score above 1", "corner a rounding step outside", "float64", "no boxes", "four columns"],
)
def test_proposals_checked_at_once_cover_the_column_by_column_cases(tmp_path: Path, variant: str) -> None:
    """Scores outside [0, 1] and corners within BOX_TOLERANCE outside it leave the two whole-array
    reductions for the column-by-column check; the result equals the key-by-key loop's (clipped)."""
    proposals = _proposals(videos=2, seconds=20, seed=7)
    if variant == "score above 1":
        proposals = _with(proposals, "vid01_x,0910", [0.1, 0.2, 0.3, 0.4, 3.5])
    elif variant == "corner a rounding step outside":
        proposals = _with(proposals, "vid00_x,0905", [-4e-7, 0.2, 1.0000005, 0.4, 0.5])
        proposals = _with(proposals, "vid01_x,0921", [0.0, -1e-7, 0.5, 1.0000002, 0.5])
    elif variant == "float64":
        proposals = {key: value.astype(np.float64) for key, value in proposals.items()}
    elif variant == "no boxes":
        proposals["vid00_x,0903"] = np.zeros((0, 5), np.float32)
    else:
        proposals = {key: np.ascontiguousarray(value[:, :4]) for key, value in proposals.items()}
    path = tmp_path / "p.pkl"
    path.write_bytes(pickle.dumps(proposals, protocol=4))
    data = load_plain(path)
    fast, slow = _proposals_at_once(data), _proposals_one_by_one(path, data)
    assert fast is not None and list(fast) == list(slow)
    for key in slow:
        assert fast[key].dtype == np.float32 and fast[key].tobytes() == slow[key].tobytes()
        assert fast[key].flags.writeable
    assert min(float(value[:, :4].min()) for value in fast.values() if value.size) >= 0
    assert max(float(value[:, :4].max()) for value in fast.values() if value.size) <= 1


@pytest.mark.parametrize(
    ("key", "row", "words"),
    [
        ("vid01_x,0915", [0.1, 0.2, 0.3, 0.4, float("nan")], "contains NaN or infinite values"),
        ("vid00_x,0902", [0.1, 0.2, 0.3, 0.4, float("inf")], "contains NaN or infinite values"),
        ("vid00_x,0911", [0.1, float("nan"), 0.3, 0.4, 0.5], "contains NaN or infinite values"),
        ("vid01_x,0903", [0.1, 0.2, 1.00001, 0.4, 0.5], "x2 1.00001 is outside [0, 1]"),
        ("vid01_x,0920", [0.1, -0.001, 0.3, 0.4, 0.5], "y1 -0.001 is outside [0, 1]"),
        ("vid00_x,0919", [0.5, 0.2, 0.3, 0.4, 0.5], "has x2 < x1"),
        ("vid00_x,0907", [0.1, 0.5, 0.3, 0.4, 0.5], "has x2 < x1 or y2 < y1"),
    ],
)
def test_proposals_at_once_leave_a_bad_box_to_the_loop_that_names_it(
    tmp_path: Path, key: str, row: list[float], words: str
) -> None:
    """One bad value among 40 keys' boxes: the whole-array check answers None, the loop names the key."""
    proposals = _with(_proposals(videos=2, seconds=20, seed=3), key, row, np.float64)
    path = tmp_path / "p.pkl"
    path.write_bytes(pickle.dumps(proposals, protocol=4))
    assert _proposals_at_once(load_plain(path)) is None
    with pytest.raises(LfbError) as info:
        read_proposals(path)
    message = str(info.value)
    assert message.startswith(f"{path}: key '{key}'") and words in message and "\n" not in message


@pytest.mark.parametrize(
    ("arrays", "words"),
    [
        ([np.zeros((2, 5)), np.zeros((2, 4))], None),  # both widths in one file: the loop takes them
        ([np.zeros((2, 5)), np.zeros((2, 5, 1))], "got shape (2, 5, 1) float64"),
        ([np.zeros((2, 6)), np.zeros((2, 6))], "got shape (2, 6) float64"),
        ([np.zeros((2, 5)), np.zeros((2, 5), bool)], "got shape (2, 5) bool"),
    ],
)
def test_proposals_at_once_leave_other_shapes_to_the_loop(tmp_path: Path, arrays: list, words: str | None) -> None:
    path = tmp_path / "p.pkl"
    path.write_bytes(pickle.dumps({f"v,{902 + i}": a for i, a in enumerate(arrays)}, protocol=4))
    assert _proposals_at_once(load_plain(path)) is None
    if words is None:
        loaded = read_proposals(path)
        assert [a.shape for a in loaded.values()] == [a.shape for a in arrays]
        return
    expected = "expected a numeric [n, 4] or [n, 5] array, " + words
    with pytest.raises(LfbError, match=r"p\.pkl: key 'v,90[23]': " + re.escape(expected)):
        read_proposals(path)


def _frombuffer_call(payload: bytes, shape: bytes, order: bytes) -> bytes:
    """Protocol 5: ``numpy._core.numeric._frombuffer(bytearray(payload), float32, shape, order)``."""
    return (
        b"\x80\x05cnumpy._core.numeric\n_frombuffer\n(\x96" + len(payload).to_bytes(8, "little") + payload
        + b"cnumpy\ndtype\n(\x8c\x02f4\x89\x88tR" + shape + b"\x8c\x01" + order + b"tR."
    )


def test_frombuffer_guard_takes_what_numpy_writes_and_nothing_else() -> None:
    """The guard lets numpy's reshape judge the shape: a view of the buffer in C or F order, never a copy
    or a size that does not fit; anything else leaves the fast path."""
    payload = np.arange(6, dtype=np.float32).tobytes()
    for order in (b"C", b"F"):
        loaded = pickle_fast.load(_frombuffer_call(payload, b"K\x02K\x03\x86", order))
        expected = np.arange(6, dtype=np.float32).reshape((2, 3), order=order.decode())
        assert loaded.shape == (2, 3) and np.array_equal(loaded, expected) and loaded.flags.writeable
        owner = loaded
        while isinstance(owner, (np.ndarray, memoryview)):  # a view of the pickle's bytearray
            owner = owner.base if isinstance(owner, np.ndarray) else owner.obj
        assert type(owner) is bytearray and not loaded.flags.owndata
    for shape, order in [
        (b"K\x04K\x03\x86", b"C"),  # 12 values from a buffer of 6
        (b"K\x06", b"C"),  # not a tuple
        (b"G@\x00\x00\x00\x00\x00\x00\x00K\x03\x86", b"C"),  # a float in the shape
        (b"K\x02K\x03\x86", b"A"),
    ]:
        with pytest.raises(pickle_fast.Unsupported):
            pickle_fast.load(_frombuffer_call(payload, shape, order))


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
def test_scan_of_a_proposals_entry_finds_every_memo_index(monkeypatch: pytest.MonkeyPatch, protocol: int) -> None:
    """The scan reads a whole proposals entry ("key": array) as one unit: a LONG_BINPUT of 2**28 in place
    of any memo store inside an entry is still found (a small index is fine)."""
    monkeypatch.setattr(pickle_fast, "_WIDE_FROM", 0)
    proposals = _proposals(videos=1, seconds=3)
    raw = pickle.dumps(proposals, protocol=protocol)
    pickle_fast.scan(raw)
    ops = list(pickletools.genops(raw))
    second, third = [pos for _, arg, pos in ops if isinstance(arg, str) and arg in proposals][1:]
    stores = [(pos, op.name) for op, _, pos in ops if second <= pos < third and op.name in ("MEMOIZE", "BINPUT")]
    assert len(stores) >= 5
    for pos, name in stores:
        end = pos + (1 if name == "MEMOIZE" else 2)
        with pytest.raises(pickle_fast.Unsupported):
            pickle_fast.scan(raw[:pos] + b"r" + (1 << 28).to_bytes(4, "little") + raw[end:])
        pickle_fast.scan(raw[:pos] + b"r" + (9).to_bytes(4, "little") + raw[end:])
