"""The restricted unpicklers load plain data and checkpoints, and never run code from the file."""

from __future__ import annotations

import collections
import os
import pickle
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from lfbtool._io.safe_pickle import Placeholder, load_plain, torch_load
from lfbtool.errors import LfbError


class _SystemPayload:
    """Pickles as ``os.system(<touch marker>)``: what a malicious proposals file looks like."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


class _EvalPayload:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (eval, (f"open({str(self.marker)!r}, 'w').close()",))


def _write_pickle(path: Path, obj: object, protocol: int = pickle.DEFAULT_PROTOCOL) -> Path:
    path.write_bytes(pickle.dumps(obj, protocol=protocol))
    return path


def test_proposals_dict_loads(tmp_path: Path) -> None:
    boxes = np.array([[0.1, 0.2, 0.5, 0.9, 0.99], [0.0, 0.0, 1.0, 1.0, 0.5]], dtype=np.float32)
    path = _write_pickle(tmp_path / "proposals.pkl", {"vid_a,0902": boxes, "vid_b,0903": boxes[:, :4]})
    loaded = load_plain(path)
    assert sorted(loaded) == ["vid_a,0902", "vid_b,0903"]
    assert loaded["vid_a,0902"].dtype == np.float32
    assert np.array_equal(loaded["vid_a,0902"], boxes)
    assert loaded["vid_b,0903"].shape == (2, 4)


@pytest.mark.parametrize("protocol", [0, 2, 4, 5])
def test_plain_containers_and_numpy_every_protocol(tmp_path: Path, protocol: int) -> None:
    data = {
        "arr": np.arange(6, dtype=np.int64).reshape(2, 3),
        "scalar": np.float64(2.5),
        "dtype": np.dtype("float16"),
        "bytes": b"\x00\xffab",
        "set": {1, 2},
        "frozen": frozenset({"x"}),
        "ordered": collections.OrderedDict(b=1, a=2),
        "tuple": (1.5, None, True),
        "objects": np.array([1, "x"], dtype=object),
    }
    loaded = load_plain(_write_pickle(tmp_path / "d.pkl", data, protocol))
    assert np.array_equal(loaded["arr"], data["arr"]) and loaded["arr"].dtype == np.int64
    assert loaded["scalar"] == 2.5 and isinstance(loaded["scalar"], np.float64)
    assert loaded["dtype"] == np.float16
    assert loaded["bytes"] == b"\x00\xffab"
    assert loaded["set"] == {1, 2} and loaded["frozen"] == frozenset({"x"})
    assert list(loaded["ordered"]) == ["b", "a"] and isinstance(loaded["ordered"], collections.OrderedDict)
    assert loaded["tuple"] == (1.5, None, True)
    assert list(loaded["objects"]) == [1, "x"]


def test_numpy1_pickle_loads(tmp_path: Path) -> None:
    arr = np.linspace(0, 1, 12, dtype=np.float32).reshape(3, 4)
    raw = pickle.dumps({"v,0902": arr, "s": np.float32(0.25)}, protocol=2)
    assert b"numpy._core.multiarray" in raw
    # numpy 1.x writes numpy.core.*: GLOBAL opcodes are text lines, so a replace makes a 1.x pickle.
    old = raw.replace(b"numpy._core.", b"numpy.core.")
    assert b"numpy._core" not in old
    (tmp_path / "old.pkl").write_bytes(old)
    loaded = load_plain(tmp_path / "old.pkl")
    assert np.array_equal(loaded["v,0902"], arr) and loaded["s"] == np.float32(0.25)


def test_load_plain_accepts_open_file(tmp_path: Path) -> None:
    path = _write_pickle(tmp_path / "p.pkl", {"k": [1, 2]})
    with open(path, "rb") as handle:
        assert load_plain(handle) == {"k": [1, 2]}


@pytest.mark.parametrize("payload", [_SystemPayload, _EvalPayload])
def test_malicious_plain_pickle_refused(tmp_path: Path, payload: type) -> None:
    marker = tmp_path / "pwned"
    path = _write_pickle(tmp_path / "evil.pkl", {"vid,0902": payload(marker)})
    with pytest.raises(LfbError, match=r"refused to load: the pickle references .*(system|eval)") as info:
        load_plain(path)
    assert str(path) in str(info.value)
    assert not marker.exists()


def test_unknown_class_refused_by_load_plain(tmp_path: Path) -> None:
    raw = b"\x80\x02cmy_pkg.mod\nThing\n)\x81}b."  # NEWOBJ of an unknown class, then BUILD
    (tmp_path / "u.pkl").write_bytes(raw)
    with pytest.raises(LfbError, match=r"references my_pkg\.mod\.Thing, which is not plain data"):
        load_plain(tmp_path / "u.pkl")


def test_codecs_encode_other_codec_refused(tmp_path: Path) -> None:
    (tmp_path / "c.pkl").write_bytes(b"c_codecs\nencode\n(Vabc\nVrot13\ntR.")
    with pytest.raises(LfbError, match="c.pkl"):
        load_plain(tmp_path / "c.pkl")


def test_missing_and_corrupt_files(tmp_path: Path) -> None:
    with pytest.raises(LfbError, match=r"nope\.pkl: no such file"):
        load_plain(tmp_path / "nope.pkl")
    (tmp_path / "bad.pkl").write_bytes(b"not a pickle at all")
    with pytest.raises(LfbError, match=r"bad\.pkl: not a readable pickle"):
        load_plain(tmp_path / "bad.pkl")
    with pytest.raises(LfbError, match=r"nope\.pth: no such file"):
        torch_load(tmp_path / "nope.pth", allow_unknown_classes=True)
    (tmp_path / "bad.pth").write_bytes(b"PK\x03\x04garbage")
    with pytest.raises(LfbError, match=r"bad\.pth: not a readable checkpoint"):
        torch_load(tmp_path / "bad.pth", allow_unknown_classes=True)


@pytest.mark.parametrize("legacy", [False, True])
def test_torch_state_dict_roundtrip(tmp_path: Path, legacy: bool) -> None:
    state = collections.OrderedDict(
        w=torch.randn(2, 3),
        h=torch.arange(4, dtype=torch.float16),
        p=torch.nn.Parameter(torch.ones(2)),
        n=torch.tensor(7),
    )
    extra = {"size": torch.Size([1, 2]), "device": torch.device("cpu"), "dtype": torch.int64}
    path = tmp_path / "sd.pth"
    torch.save({"state_dict": state, **extra}, path, _use_new_zipfile_serialization=not legacy)
    loaded = torch_load(path, allow_unknown_classes=False)
    for key, value in state.items():
        assert (
            torch.equal(loaded["state_dict"][key], value) and loaded["state_dict"][key].dtype == value.dtype
        )
    assert loaded["size"] == torch.Size([1, 2]) and loaded["dtype"] is torch.int64
    assert loaded["device"] == torch.device("cpu")


@pytest.mark.parametrize("allow_unknown", [False, True])
@pytest.mark.parametrize("payload", [_SystemPayload, _EvalPayload])
def test_malicious_torch_checkpoint_refused(tmp_path: Path, allow_unknown: bool, payload: type) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pth"
    torch.save({"state_dict": {"w": torch.zeros(2)}, "meta": payload(marker)}, path)
    with pytest.raises(LfbError, match=r"evil\.pth: refused to load"):
        torch_load(path, allow_unknown_classes=allow_unknown)
    assert not marker.exists()


def _throwaway_module(tmp_path: Path, name: str, import_marker: Path) -> object:
    """A module that leaves a file when imported: proves the loader never imports it."""
    (tmp_path / f"{name}.py").write_text(
        f"open({str(import_marker)!r}, 'a').close()\n"
        "import os\n"
        "def run(cmd):\n"
        "    os.system(cmd)\n"
        "class History:\n"
        "    def __init__(self):\n"
        "        self.values = [1.0, 2.0]\n"
        "class Runner:\n"
        "    def __init__(self, marker):\n"
        "        self.marker = marker\n"
        "    def __reduce__(self):\n"
        "        return (run, ('touch ' + self.marker,))\n"
    )
    sys.path.insert(0, str(tmp_path))
    try:
        module = __import__(name)
    finally:
        sys.path.remove(str(tmp_path))
    return module


def test_unknown_class_becomes_inert_placeholder(tmp_path: Path) -> None:
    import_marker = tmp_path / "imported"
    module = _throwaway_module(tmp_path, "lfb_throwaway_hist", import_marker)
    path = tmp_path / "ckpt.pth"
    torch.save({"message_hub": {"log": module.History()}, "w": torch.ones(3)}, path)
    del sys.modules["lfb_throwaway_hist"]
    import_marker.unlink()
    sys.path.insert(0, str(tmp_path))  # importable, yet must not be imported
    try:
        loaded = torch_load(path, allow_unknown_classes=True)
        with pytest.raises(LfbError, match=r"lfb_throwaway_hist\.History, which is not plain data"):
            torch_load(path, allow_unknown_classes=False)
    finally:
        sys.path.remove(str(tmp_path))
    history = loaded["message_hub"]["log"]
    assert isinstance(history, Placeholder)
    assert type(history).__module__ == "lfb_throwaway_hist" and type(history).__qualname__ == "History"
    assert history.values == [1.0, 2.0]
    assert torch.equal(loaded["w"], torch.ones(3))
    assert not import_marker.exists()
    with pytest.raises(LfbError, match="would call lfb_throwaway_hist.History"):
        type(history)()


def test_unknown_function_call_refused(tmp_path: Path) -> None:
    import_marker = tmp_path / "imported"
    run_marker = tmp_path / "ran"
    module = _throwaway_module(tmp_path, "lfb_throwaway_run", import_marker)
    path = tmp_path / "ckpt.pth"
    torch.save({"meta": module.Runner(str(run_marker)), "w": torch.ones(1)}, path)
    del sys.modules["lfb_throwaway_run"]
    import_marker.unlink()
    sys.path.insert(0, str(tmp_path))
    try:
        with pytest.raises(
            LfbError, match=r"refused to load .*ckpt\.pth: the pickle would call lfb_throwaway_run\.run"
        ):
            torch_load(path, allow_unknown_classes=True)
    finally:
        sys.path.remove(str(tmp_path))
    assert not run_marker.exists() and not import_marker.exists()


@pytest.mark.filterwarnings("ignore::FutureWarning")
def test_torchscript_archive_refused(tmp_path: Path) -> None:
    path = tmp_path / "scripted.pt"
    torch.jit.save(torch.jit.script(torch.nn.Linear(2, 2)), path)
    with pytest.raises(LfbError, match=r"scripted\.pt: is a TorchScript archive"):
        torch_load(path, allow_unknown_classes=True)


def test_common_checkpoint_metadata_types_load(tmp_path: Path) -> None:
    import datetime

    stamp = datetime.datetime(2024, 5, 1, 12, 30)
    meta = {
        "time": stamp,
        "work_dir": Path("/work/dirs/lfb"),
        "counts": collections.defaultdict(list, {"a": [1]}),
        "hist": collections.Counter("aab"),
    }
    torch.save({"meta": meta, "state_dict": {"w": torch.ones(1)}}, tmp_path / "meta.pth")
    loaded = torch_load(tmp_path / "meta.pth", allow_unknown_classes=False)["meta"]
    assert loaded["time"] == stamp and loaded["work_dir"] == Path("/work/dirs/lfb")
    assert loaded["counts"]["a"] == [1] and loaded["counts"].default_factory is list
    assert loaded["hist"] == collections.Counter("aab")


def test_bounded_unpickler_overrides_in_its_own_dispatch_table() -> None:
    """CPython's private pure-Python unpickler is subclassed, never patched: its table stays its own."""
    from lfbtool._io.pickle_bounds import BoundedUnpickler

    base = pickle._Unpickler
    assert BoundedUnpickler.dispatch is not base.dispatch
    for op, name in ((pickle.BUILD, "load_build"), (pickle.REDUCE, "load_reduce"), (pickle.APPEND, "load_append")):
        assert base.dispatch[op[0]] is getattr(base, name)
    assert BoundedUnpickler.dispatch[pickle.BUILD[0]] is BoundedUnpickler.load_build
    assert BoundedUnpickler.dispatch[pickle.APPEND[0]] is not base.load_append  # wrapped: depth tracking
