"""The decoder of the common proposals layout (lfbtool/data/_proposals_decode.py): what it gives equals
``pickle.load`` plus the generic checks, bit for bit; anything else is left to the generic path."""

from __future__ import annotations

import pickle
import pickletools
import random
from pathlib import Path

import numpy as np
import pytest

from lfbtool.data import _proposals_decode
from lfbtool.data._proposals_decode import decode
from lfbtool.data.ava import read_proposals
from lfbtool.errors import LfbError


def _boxes(rng: np.random.Generator, rows: int, cols: int = 5) -> np.ndarray:
    corners = np.sort(rng.random((rows, 2, 2), dtype=np.float32), axis=1)
    parts = [corners[:, 0], corners[:, 1]] + ([rng.random((rows, 1), dtype=np.float32)] if cols == 5 else [])
    return np.ascontiguousarray(np.concatenate(parts, axis=1))


def _proposals(keys: int, cols: int = 5, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {f"vid{i // 50:03d}_x,{902 + i % 50:04d}": _boxes(rng, int(rng.integers(5, 26)), cols) for i in range(keys)}


def _expected(data: dict[str, np.ndarray]) -> dict[tuple[str, int], np.ndarray]:
    """What read_proposals must give, computed here: ("vid", int(ts)) -> the float32 array as stored."""
    return {(k.split(",")[0], int(k.split(",")[1])): np.asarray(v, np.float32) for k, v in data.items()}


def _bitwise_equal(got: dict, expected: dict) -> None:
    assert list(got) == list(expected)
    for key, array in expected.items():
        assert type(got[key]) is np.ndarray and got[key].dtype == np.float32 and got[key].shape == array.shape
        assert got[key].flags.writeable
        assert np.array_equal(got[key].view(np.uint32), array.view(np.uint32)), key


def _generic(path: Path, monkeypatch: pytest.MonkeyPatch) -> object:
    """read_proposals without the decoder: the result or the refusal's message."""
    with monkeypatch.context() as patch:
        patch.setattr(_proposals_decode, "decode", lambda raw: None)
        try:
            return read_proposals(path)
        except LfbError as exc:
            return str(exc)


def _same_outcome(path: Path, monkeypatch: pytest.MonkeyPatch) -> object:
    """read_proposals (with the decoder) gives what the generic path gives, result or message."""
    generic = _generic(path, monkeypatch)
    try:
        got = read_proposals(path)
    except LfbError as exc:
        assert str(exc) == generic
        return generic
    assert not isinstance(generic, str), generic
    _bitwise_equal(got, generic)
    return got


def _write(tmp_path: Path, data: object, protocol: int = 4, name: str = "p.pkl") -> Path:
    path = tmp_path / name
    path.write_bytes(pickle.dumps(data, protocol=protocol))
    return path


def _stream(raw: bytes) -> bytes:
    """The opcodes of a protocol 4 pickle after PROTO, FRAME headers cut out."""
    stream, _ = _proposals_decode._unframed(raw)
    return stream


def _framed(stream: bytes, cuts: list[int]) -> bytes:
    """PROTO 4, then ``stream`` in FRAMEs ending at ``cuts``."""
    out, start = [b"\x80\x04"], 0
    for end in [*cuts, len(stream)]:
        out += [b"\x95", (end - start).to_bytes(8, "little"), stream[start:end]]
        start = end
    return b"".join(out)


@pytest.mark.parametrize("keys", [1, 2, 999, 1000, 1001, 2000, 3001])
@pytest.mark.parametrize("cols", [4, 5])
def test_decodes_pickle_dump_protocol_4(keys: int, cols: int) -> None:
    data = _proposals(keys, cols)
    got = decode(pickle.dumps(data, protocol=4))
    if keys == 1:  # a one-item dict is written with SETITEM: the generic path
        assert got is None
        return
    assert got is not None
    _bitwise_equal(got, _expected(data))
    # the arrays are views of one buffer, as the decoder promises; writing one leaves the others
    arrays = list(got.values())
    arrays[0][0, 0] = 0.5
    assert arrays[1][0, 0] == _expected(data)[list(got)[1]][0, 0]


def test_read_proposals_uses_the_decoder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = _proposals(3000)
    path = _write(tmp_path, data)
    calls = []
    original = _proposals_decode.decode
    monkeypatch.setattr(_proposals_decode, "decode", lambda raw: calls.append(original(raw)) or calls[-1])
    _bitwise_equal(read_proposals(path), _expected(data))
    assert calls and calls[0] is not None


@pytest.mark.parametrize("protocol", [2, 3, 5])
def test_other_protocols_go_to_the_generic_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, protocol: int) -> None:
    data = _proposals(1200)
    assert decode(pickle.dumps(data, protocol=protocol)) is None
    _bitwise_equal(_same_outcome(_write(tmp_path, data, protocol), monkeypatch), _expected(data))


def _variant(name: str) -> dict[str, np.ndarray]:
    data = _proposals(40)
    first, second = list(data)[3:5]
    if name == "float64":
        data[first] = data[first].astype(np.float64)
    elif name == "float64 everywhere":
        data = {k: v.astype(np.float64) for k, v in data.items()}
    elif name == "big-endian":
        data[first] = data[first].astype(">f4")
    elif name == "fortran":
        data[first] = np.asfortranarray(data[first])
    elif name == "two empty":
        data[first] = data[second] = np.zeros((0, 5), np.float32)
    elif name == "4 and 5 columns":
        data[first] = data[first][:, :4].copy()
    elif name == "int32":
        data[first] = (data[first] > 0.5).astype(np.int32)
    elif name == "one row of 3":
        data[first] = data[first][:, :3].copy()
    elif name == "a list":
        data[first] = data[first].tolist()
    elif name == "1-D":
        data[first] = data[first].reshape(-1)
    return data


@pytest.mark.parametrize(
    "name",
    ["float64", "float64 everywhere", "big-endian", "fortran", "two empty", "4 and 5 columns", "int32",
     "one row of 3", "a list", "1-D"],
)
def test_other_layouts_go_to_the_generic_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    data = _variant(name)
    assert decode(pickle.dumps(data, protocol=4)) is None
    _same_outcome(_write(tmp_path, data), monkeypatch)


@pytest.mark.parametrize("name", ["one empty", "non-contiguous", "many rows"])
def test_layouts_that_pickle_alike_decode(name: str) -> None:
    data = _proposals(40)
    first = list(data)[3]
    rng = np.random.default_rng(1)
    if name == "one empty":
        data[first] = np.zeros((0, 5), np.float32)
    elif name == "non-contiguous":  # numpy pickles its data in C order: a C-order array comes back
        data[first] = _boxes(rng, 12)[::2]
    else:  # BININT2 shape, BINBYTES data
        data[first] = _boxes(rng, 700)
    got = decode(pickle.dumps(data, protocol=4))
    assert got is not None
    _bitwise_equal(got, _expected(data))


@pytest.mark.parametrize(
    "video", ["vid é", "v-id_ü.x", "a/b", " lead", "vid\u2014dash", "\u010cech", "new\nline", "", "..", "a\\b"]
)
def test_odd_video_ids_decode_as_the_generic_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, video: str) -> None:
    data = _proposals(30)
    data[f"{video},0950"] = _boxes(np.random.default_rng(2), 7)
    raw = pickle.dumps(data, protocol=4)
    got = decode(raw)
    outcome = _same_outcome(_write(tmp_path, data), monkeypatch)
    if got is not None:
        _bitwise_equal(got, outcome)
    if video in ("vid é", "v-id_ü.x", "a/b", " lead"):
        assert got is not None  # the decoder covers these


@pytest.mark.parametrize("stamp", ["0902", "902", " 902", "+902", "9_02", "0x10", "１２", "99999999999", "-5"])
def test_timestamps_decode_as_the_generic_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, stamp: str) -> None:
    data = _proposals(30)
    data[f"other,{stamp}"] = _boxes(np.random.default_rng(3), 6)
    got = decode(pickle.dumps(data, protocol=4))
    outcome = _same_outcome(_write(tmp_path, data), monkeypatch)
    assert (got is not None) == (stamp.isascii() and stamp.isdigit() and len(stamp) <= 9)
    if got is not None:
        _bitwise_equal(got, outcome)


def test_duplicate_after_int_is_refused_naming_the_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = _proposals(30)
    data["vid000_x,902"] = _boxes(np.random.default_rng(4), 5)  # "vid000_x,0902" is there too
    assert decode(pickle.dumps(data, protocol=4)) is None
    message = _same_outcome(_write(tmp_path, data), monkeypatch)
    assert isinstance(message, str) and "'vid000_x,902'" in message and "duplicate" in message


def test_boxes_just_outside_are_clipped_as_the_generic_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = _proposals(30)
    keys = list(data)
    data[keys[2]][0, 2] = np.float32(1.0000001)
    data[keys[2]][1, 0] = np.float32(-5e-7)
    data[keys[9]][0, 0] = np.float32(-0.0)  # left alone: only the arrays with a corner outside are clipped
    data[keys[2]][2, 1] = np.float32(-0.0)  # in a clipped array
    got = decode(pickle.dumps(data, protocol=4))
    assert got is not None
    expected = _same_outcome(_write(tmp_path, data), monkeypatch)
    _bitwise_equal(got, expected)
    key = ("vid000_x", 904)
    assert got[key][0, 2] == 1.0 and got[key][1, 0] == 0.0
    assert np.signbit(got["vid000_x", 911][0, 0])


@pytest.mark.parametrize("value", [1.5, -0.01, np.nan, np.inf])
def test_bad_boxes_are_refused_naming_the_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, value: float) -> None:
    data = _proposals(30)
    data["vid000_x,0910"][3, 1] = value
    assert decode(pickle.dumps(data, protocol=4)) is None
    message = _same_outcome(_write(tmp_path, data), monkeypatch)
    assert isinstance(message, str) and "'vid000_x,0910'" in message


def test_x2_below_x1_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = _proposals(30)
    data["vid000_x,0911"][0, [0, 2]] = [0.8, 0.2]
    assert decode(pickle.dumps(data, protocol=4)) is None
    assert "'vid000_x,0911'" in _same_outcome(_write(tmp_path, data), monkeypatch)


@pytest.mark.parametrize("cut", [1, 100, 2000, -2, -1])
def test_truncated_files_are_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cut: int) -> None:
    raw = pickle.dumps(_proposals(30), protocol=4)
    path = tmp_path / "t.pkl"
    path.write_bytes(raw[:cut])
    assert decode(raw[:cut]) is None
    assert isinstance(_same_outcome(path, monkeypatch), str)


@pytest.mark.parametrize("extra", [b"N", b".", b"\x94", b"\x80\x04\x95\x01\x00\x00\x00\x00\x00\x00\x00."])
def test_bytes_after_stop_go_to_the_generic_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, extra: bytes) -> None:
    raw = pickle.dumps(_proposals(30), protocol=4) + extra
    path = tmp_path / "x.pkl"
    path.write_bytes(raw)
    assert decode(raw) is None
    _same_outcome(path, monkeypatch)


@pytest.mark.parametrize(
    ("old", "new"),
    [
        (b"\x8c\x16numpy._core.multiarray\x94\x8c\x0c_reconstruct", b"\x8c\x02os\x94\x8c\x06system"),
        (b"\x8c\x05numpy\x94\x8c\x07ndarray", b"\x8c\x02os\x94\x8c\x06system"),
        (b"\x8c\x05dtype", b"\x8c\x04eval"),
    ],
)
def test_code_in_the_layout_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, old: bytes, new: bytes) -> None:
    stream = _stream(pickle.dumps(_proposals(30), protocol=4))
    assert stream.count(old) == 1
    raw = _framed(stream.replace(old, new), [])
    path = tmp_path / "h.pkl"
    path.write_bytes(raw)
    assert decode(raw) is None
    message = _same_outcome(path, monkeypatch)
    assert isinstance(message, str) and str(path) in message


def test_numpy_1_module_name_decodes() -> None:
    data = _proposals(30)
    stream = _stream(pickle.dumps(data, protocol=4))
    old = b"\x8c\x16numpy._core.multiarray"
    got = decode(_framed(stream.replace(old, b"\x8c\x15numpy.core.multiarray"), []))
    assert got is not None
    _bitwise_equal(got, _expected(data))


def _opcode_starts(stream: bytes) -> list[int]:
    return [pos - 2 for _, _, pos in pickletools.genops(b"\x80\x04" + stream)][1:]


def test_frames_between_opcodes_decode_and_inside_one_do_not() -> None:
    data = _proposals(3000)
    stream = _stream(pickle.dumps(data, protocol=4))
    starts = np.array(_opcode_starts(stream))
    rng = np.random.default_rng(0)
    for _ in range(10):  # FRAMEs of >= 50 kB ending between opcodes: the C unpickler reads the same opcodes
        targets = range(40_000, len(stream) - 90_000, 100_000)
        cuts = [int(rng.choice(starts[(starts >= t) & (starts < t + 50_000)])) for t in targets]
        got = decode(_framed(stream, cuts))
        assert got is not None
        _bitwise_equal(got, _expected(data))
    inside = np.setdiff1d(np.arange(40_000, len(stream) - 40_000), starts)
    for cut in rng.choice(inside, 30, replace=False).tolist():  # a cut inside an opcode: other bytes read
        assert decode(_framed(stream, [cut])) is None
    assert decode(_framed(stream, [int(starts[starts > 1000][0])])) is None  # a small FRAME: not pickle's


def test_a_frame_longer_than_the_file_is_refused() -> None:
    raw = bytearray(pickle.dumps(_proposals(30), protocol=4))
    raw[3:11] = (len(raw)).to_bytes(8, "little")
    assert decode(bytes(raw)) is None


def _random_dict(rng: random.Random, nrng: np.random.Generator) -> dict:
    """Half of them clean (what the decoder reads), the others with a few odd keys, shapes or values."""
    odd = rng.random() < 0.5
    data: dict = {}
    cols = rng.choice([4, 5])
    for _ in range(rng.randint(2, 40)):
        alphabet = "abcXYZ019_-./ é\u2014," if odd and rng.random() < 0.2 else "abcXYZ019_-"
        video = "".join(rng.choice(alphabet) for _ in range(rng.randint(0 if odd else 1, 12)))
        stamp = f"{rng.randint(0, 9999):04d}"
        if odd and rng.random() < 0.1:
            stamp = rng.choice([str(rng.randint(0, 99)), f" {rng.randint(0, 9)}", "x"])
        rows = rng.choice([1, 3, 12, 13, 40, 300] + ([0] if odd else []))
        array = _boxes(nrng, rows, cols if not odd or rng.random() > 0.05 else 9 - cols)
        roll = rng.random() if odd else 1.0
        if roll < 0.05 and rows:
            array[0, 0] = rng.choice([1.0000001, -1e-7, 2.0, np.nan, -0.0])
        elif roll < 0.08:
            array = array.astype(rng.choice([np.float64, np.float16, ">f4"]))
        data[f"{video},{stamp}"] = array
    return data


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_random_dicts_decode_as_pickle_load_and_the_checks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, protocol: int
) -> None:
    rng, nrng = random.Random(protocol), np.random.default_rng(protocol)
    decoded = 0
    for i in range(200):
        data = _random_dict(rng, nrng)
        path = _write(tmp_path, data, protocol, f"r{i}.pkl")
        got = decode(path.read_bytes())
        generic = _generic(path, monkeypatch)
        if got is not None:
            decoded += 1
            assert not isinstance(generic, str), generic
            _bitwise_equal(got, generic)
    if protocol == 4:
        assert decoded >= 80  # the decoder is used, not always left to the generic path
    else:
        assert decoded == 0


@pytest.mark.parametrize(
    "body",
    [b"\x8c" * 300_000, (b"\x8c\xfa" + b"a" * 250) * 1200, (b"u(\x8c\x05" + b"a" * 200) * 1500, b"\x94t\x94b" * 80_000],
)
def test_garbage_between_a_valid_first_entry_and_the_end_is_refused(body: bytes) -> None:
    stream = _stream(pickle.dumps(_proposals(3), protocol=4))
    first_end = stream.index(b"\x94t\x94b") + 4  # the first entry's end
    assert decode(_framed(stream[:first_end] + body + b"\x94t\x94bu.", [])) is None
    assert decode(_framed(stream[:first_end] + body + stream[first_end:], [])) is None
