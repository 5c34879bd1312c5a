"""MMEngine Runner and MMCV-era checkpoints load without their classes and without running pickled code.

The MMEngine layout is rebuilt without mmengine: a throwaway module defines a HistoryBuffer-like class
whose class-level dict holds its own methods (protocol 2 writes them as ``getattr(Class, "min")``) and
a MessageHub-like state; the module is deleted before loading.
"""

from __future__ import annotations

import collections
import importlib
import io
import json
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from lfbtool._io.safe_pickle import Placeholder, torch_load
from lfbtool.errors import LfbError
from tests.conftest import run_in_process

FAKE_MMENGINE = '''
from collections import OrderedDict
import numpy as np

class HistoryBuffer:
    _statistics_methods = dict()

    def __init__(self, log_history=(), count_history=(), max_length=1000000):
        self.max_length = max_length
        self._set_default_statistics()
        self._log_history = np.array(log_history)
        self._count_history = np.array(count_history)

    def _set_default_statistics(self):
        self._statistics_methods.setdefault("min", HistoryBuffer.min)
        self._statistics_methods.setdefault("max", HistoryBuffer.max)
        self._statistics_methods.setdefault("current", HistoryBuffer.current)
        self._statistics_methods.setdefault("mean", HistoryBuffer.mean)

    def min(self): return self._log_history.min()
    def max(self): return self._log_history.max()
    def current(self): return self._log_history[-1]
    def mean(self): return self._log_history.mean()

    def __getstate__(self):
        self.__dict__.update(statistics_methods=self._statistics_methods)
        return self.__dict__

class MessageHub:
    def __init__(self):
        self._log_scalars = OrderedDict(
            [("train/loss", HistoryBuffer([0.5, 0.25], [1, 1])), ("train/lr", HistoryBuffer([0.1], [1]))]
        )
        self._runtime_info = OrderedDict(epoch=20, iter=4000, max_epochs=20, seed=np.int64(7))
        self._resumed_keys = OrderedDict([("train/loss", True), ("train/lr", True), ("epoch", True),
                                          ("iter", True), ("max_epochs", True), ("seed", True)])

    def state_dict(self):
        return {"log_scalars": self._log_scalars, "runtime_info": self._runtime_info,
                "resumed_keys": self._resumed_keys}

class ConfigDict(dict):
    pass
'''


def mmengine_checkpoint(path: Path, state_dict: dict[str, torch.Tensor], module_dir: Path,
                        protocol: int = 2, hub_object: bool = False) -> Path:
    """Save ``state_dict`` the way MMEngine's Runner does, through a module deleted afterwards."""
    name = f"lfb_fake_mmengine_{protocol}_{int(hub_object)}"
    module_dir.mkdir(parents=True, exist_ok=True)
    source = module_dir / f"{name}.py"
    source.write_text(FAKE_MMENGINE)
    sys.path.insert(0, str(module_dir))
    try:
        fake = importlib.import_module(name)
        hub = fake.MessageHub()
        checkpoint = {
            "meta": {"epoch": 20, "iter": 4000, "cfg": "model = dict(type='FastRCNN')", "seed": 7,
                     "experiment_name": "slowonly_ava", "time": "20240501_123000", "mmengine_version": "0.10.4",
                     "dataset_meta": fake.ConfigDict(classes=("walk", "run"))},
            "state_dict": collections.OrderedDict(state_dict),
            "message_hub": hub if hub_object else hub.state_dict(),
            "optimizer": {"state": {0: {"momentum_buffer": torch.ones(2)}},
                          "param_groups": [{"lr": 0.1, "momentum": 0.9, "params": [0]}]},
            "param_schedulers": [{"milestones": collections.Counter([10, 15]), "gamma": 0.1, "last_epoch": 20,
                                  "_get_lr_called_within_step": False}],
        }
        torch.save(checkpoint, path, pickle_protocol=protocol)
    finally:
        sys.path.remove(str(module_dir))
        del sys.modules[name]
        source.unlink()
    return path


def data_pkl(path: Path) -> bytes:
    with zipfile.ZipFile(path) as archive:
        return archive.read(next(n for n in archive.namelist() if n.endswith("/data.pkl")))


@pytest.mark.parametrize("hub_object", [False, True])
@pytest.mark.parametrize("protocol", [1, 2, 4])
def test_mmengine_runner_checkpoint_loads(tmp_path: Path, protocol: int, hub_object: bool) -> None:
    weights = {"backbone.conv.weight": torch.randn(2, 3), "cls_head.fc_cls.bias": torch.zeros(2)}
    path = mmengine_checkpoint(tmp_path / "ckpt.pth", weights, tmp_path / "mods", protocol, hub_object)
    if protocol == 2:
        assert b"getattr" in data_pkl(path)  # the reference form that used to be refused
    loaded = torch_load(path, allow_unknown_classes=True)
    assert all(torch.equal(loaded["state_dict"][k], v) for k, v in weights.items())
    hub = loaded["message_hub"]
    if hub_object:
        assert isinstance(hub, Placeholder)
        hub = {"log_scalars": hub._log_scalars, "runtime_info": hub._runtime_info, "resumed_keys": hub._resumed_keys}
    loss = hub["log_scalars"]["train/loss"]
    assert isinstance(loss, Placeholder) and type(loss).__qualname__ == "HistoryBuffer"
    assert np.array_equal(loss._log_history, [0.5, 0.25]) and loss.max_length == 1000000
    methods = loss.statistics_methods
    assert sorted(methods) == ["current", "max", "mean", "min"]
    assert all(isinstance(m, type) and issubclass(m, Placeholder) for m in methods.values())
    assert methods["min"].__qualname__ == "HistoryBuffer.min"
    with pytest.raises(LfbError, match="would call"):
        methods["min"](loss)  # inert: calling a placeholder method is refused
    assert hub["runtime_info"]["iter"] == 4000 and hub["runtime_info"]["seed"] == np.int64(7)
    assert hub["resumed_keys"]["train/loss"] is True
    assert loaded["meta"]["dataset_meta"]._lfb_items == {"classes": ("walk", "run")}
    assert loaded["optimizer"]["param_groups"][0]["lr"] == 0.1
    assert loaded["param_schedulers"][0]["milestones"] == collections.Counter([10, 15])


def test_mmcv_era_checkpoint_loads(tmp_path: Path) -> None:
    meta = {"mmcv_version": "1.7.1", "config": "model = dict(type='FastRCNN')\n", "CLASSES": ("a", "b"),
            "time": "Mon May  1 12:30:00 2023", "env_info": "sys.platform: linux\nPython: 3.8", "epoch": 20,
            "iter": 900, "hook_msgs": {"best_score": np.float64(0.25), "best_ckpt": "epoch_20.pth"},
            "dtype": np.dtype("float32"), "count": np.int32(3)}
    optimizer = {"state": {0: {"momentum_buffer": torch.ones(3)}}, "param_groups": [{"lr": 0.01, "params": [0]}]}
    for legacy in (False, True):
        path = tmp_path / f"mmcv_{legacy}.pth"
        torch.save({"meta": meta, "state_dict": {"backbone.w": torch.ones(2)}, "optimizer": optimizer}, path,
                   _use_new_zipfile_serialization=not legacy)
        loaded = torch_load(path, allow_unknown_classes=False)
        assert loaded["meta"] == meta
        assert type(loaded["meta"]["hook_msgs"]["best_score"]) is np.float64
        assert torch.equal(loaded["optimizer"]["state"][0]["momentum_buffer"], torch.ones(3))


# -- hostile variants: one line, nothing run -------------------------------------------------------------
def _s(text: str) -> bytes:
    """BINUNICODE."""
    data = text.encode()
    return b"X" + len(data).to_bytes(4, "little") + data


def _getattr(target: bytes, name: str, *call: str) -> bytes:
    """Protocol 2 ops for ``getattr(<target>, name)``, then called with ``call`` when given."""
    ops = b"cbuiltins\ngetattr\n(" + target + _s(name) + b"tR"
    return ops + (b"(" + b"".join(_s(a) for a in call) + b"tR" if call else b"")


PLACEHOLDER = b"clfb_gone_module\nHistoryBuffer\n"
INSTANCE = PLACEHOLDER + b")\x81}b"  # NEWOBJ + empty BUILD
HOSTILE = {
    "getattr_os_system": lambda m: _getattr(b"cposixpath\nos\n", "system", f"touch {m}"),
    "os_system_direct": lambda m: b"cos\nsystem\n(" + _s(f"touch {m}") + b"tR",
    "getattr_builtins_eval": lambda m: _getattr(b"cbuiltins\nglobals\n)R", "eval", f"open('{m}','w')"),
    "getattr_allowed_class": lambda m: _getattr(b"ccollections\nOrderedDict\n", "fromkeys"),
    "getattr_dict_class": lambda m: _getattr(b"cbuiltins\ndict\n", "fromkeys"),
    "getattr_numpy_function": lambda m: _getattr(b"cnumpy.core.multiarray\n_reconstruct\n", "__globals__"),
    "getattr_numpy_plain_name": lambda m: _getattr(b"cnumpy\nndarray\n", "tofile", f"{m}"),
    "getattr_torch_function": lambda m: _getattr(b"ctorch._utils\n_rebuild_tensor_v2\n", "__globals__"),
    "getattr_torch_plain_name": lambda m: _getattr(b"ctorch\nTensor\n", "new_empty"),
    "getattr_on_str": lambda m: _getattr(_s("abc"), "join"),
    "placeholder_call": lambda m: _getattr(PLACEHOLDER, "__call__", f"touch {m}"),
    "placeholder_class": lambda m: _getattr(INSTANCE, "__class__"),
    "placeholder_subclasses": lambda m: _getattr(PLACEHOLDER, "__subclasses__"),
    "placeholder_init": lambda m: _getattr(PLACEHOLDER, "__init__"),
    "placeholder_reduce": lambda m: _getattr(INSTANCE, "__reduce__"),
    "placeholder_globals_chain": lambda m: b"cbuiltins\ngetattr\n(" + _getattr(PLACEHOLDER, "min")
    + _s("__globals__") + b"tR",
    "placeholder_method_called": lambda m: _getattr(PLACEHOLDER, "run", f"touch {m}"),
    "instance_method_called": lambda m: _getattr(INSTANCE, "run", f"touch {m}"),
    "getattr_with_default": lambda m: b"cbuiltins\ngetattr\n(" + PLACEHOLDER + _s("x") + b"NtR",
    "dunder_in_stack_global": lambda m: _s("lfb_gone_module") + _s("HistoryBuffer.__subclasses__") + b"\x93",
    "newobj_helper_on_real_class": lambda m: b"ccopyreg\n__newobj__\n(cbuiltins\nbytearray\nK\x05tR",
    "reconstructor_on_real_class": lambda m: b"ccopyreg\n_reconstructor\n(cbuiltins\nbytearray\n"
    b"cbuiltins\nobject\nNtR",
    "dunder_state_key": lambda m: PLACEHOLDER + b")\x81}" + _s("__class__") + b"cbuiltins\ndict\nsb"
    + b"\x94" + _getattr(b"h\x00", "__class__"),
}


def _torch_file(path: Path, payload: bytes) -> Path:
    """A torch zip checkpoint whose data.pkl is ``{"meta": <payload>}``."""
    torch.save({"meta": "x"}, path)
    with zipfile.ZipFile(path) as archive:
        entries = {n: archive.read(n) for n in archive.namelist()}
    pkl = next(n for n in entries if n.endswith("/data.pkl"))
    entries[pkl] = b"\x80\x02}" + _s("meta") + payload + b"s."
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
    path.write_bytes(buffer.getvalue())
    return path


@pytest.mark.parametrize("variant", sorted(HOSTILE))
def test_hostile_getattr_variants_refused(tmp_path: Path, variant: str) -> None:
    marker = tmp_path / "pwned"
    path = _torch_file(tmp_path / "evil.pth", HOSTILE[variant](marker))
    with pytest.raises(LfbError) as info:
        torch_load(path, allow_unknown_classes=True)
    message = str(info.value)
    assert "\n" not in message and str(path) in message and "refused to load" in message, message
    assert not marker.exists()


def test_getattr_on_placeholder_instance_is_inert(tmp_path: Path) -> None:
    path = _torch_file(tmp_path / "ok.pth", _getattr(INSTANCE, "update"))
    method = torch_load(path, allow_unknown_classes=True)["meta"]
    assert issubclass(method, Placeholder) and method.__qualname__ == "HistoryBuffer.update"
    with pytest.raises(LfbError, match=r"refused to load"):
        torch_load(path, allow_unknown_classes=False)  # getattr is never admitted without placeholders


# -- the CLI reads such checkpoints ---------------------------------------------------------------------
def test_extract_reads_mmengine_checkpoint(tiny_data, tmp_path: Path, capsys) -> None:
    from lfbtool.testing.checkpoints import random_backbone_state

    state = {f"backbone.{k}": v for k, v in random_backbone_state("slowonly_r50", seed=3).items()}
    checkpoint = mmengine_checkpoint(tmp_path / "mmengine_det.pth", state, tmp_path / "mods")
    out = tmp_path / "out"
    done = run_in_process(tiny_data.extract_args(out) + ["--checkpoint", str(checkpoint)], capsys)
    assert done.returncode == 0, done.stderr
    assert (out / "lfb_train.h5").is_file()


def test_recognize_reads_mmengine_checkpoint(tiny_data, tmp_path: Path, capsys) -> None:
    from lfbtool.testing.checkpoints import random_backbone_state

    state = {f"backbone.{k}": v for k, v in random_backbone_state("slowonly_r50", seed=4).items()}
    generator = torch.Generator().manual_seed(5)
    state["cls_head.fc_cls.weight"] = torch.randn(3, 2048, generator=generator) * 0.01
    state["cls_head.fc_cls.bias"] = torch.zeros(3)
    checkpoint = mmengine_checkpoint(tmp_path / "mmengine_rec.pth", state, tmp_path / "mods")
    frames = sorted(p for p in tiny_data.example.frames_root.iterdir() if p.is_dir())[0]
    done = run_in_process(["recognize", str(frames), "--backbone", "slowonly_r50", "--checkpoint", str(checkpoint),
                           "--num-clips", "1", "--clip-len", "2", "--frame-interval", "1", "--short-side", "32",
                           "--crop-size", "32", "--device", "cpu", "--json"], capsys)
    assert done.returncode == 0, done.stderr
    record = json.loads(done.stdout.strip().splitlines()[-1])
    assert len(record["scores"]) == 3 and all(np.isfinite(record["scores"])), record
