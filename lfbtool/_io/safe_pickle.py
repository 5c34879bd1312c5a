"""Restricted unpickling: proposals and checkpoints are loaded without running code from the file.

A pickle is a small program: every GLOBAL opcode imports a name and every REDUCE calls it, which is
how ``os.system`` / ``eval`` payloads run. The unpicklers here resolve globals only from an allow
list of plain-data constructors (numpy arrays, containers, torch tensor rebuilds) and never import a
module named by the file.

* :func:`load_plain` admits numpy arrays/scalars/dtypes and builtin containers; anything else is
  refused. Used for MMAction2 proposal pkls.
* :func:`torch_load` runs ``torch.load`` with this module as ``pickle_module``. With
  ``allow_unknown_classes=True`` (checkpoint metadata such as MMEngine's ``message_hub``) an unknown
  global becomes an inert placeholder class: it can be instantiated by NEWOBJ and receive state, but
  calling it (REDUCE, the way payloads run) raises :class:`LfbError`. Protocol 2 pickles a method
  reference such as MMEngine's ``HistoryBuffer.min`` as ``getattr(HistoryBuffer, "min")``: that
  ``getattr`` is admitted only on a placeholder and yields another placeholder; dunder names and any
  real target (module, function, allowed class, data) are refused.
"""

from __future__ import annotations

import collections
import datetime
import functools
import io
import os
import pathlib
import pickle
import types
import zipfile
from typing import IO, Any

from lfbtool._io import pickle_fast
from lfbtool._io.pickle_bounds import BoundedUnpickler, Budget, Inert
from lfbtool.errors import LfbError

__all__ = ["load_plain", "read_bytes", "torch_load", "RestrictedUnpickler", "Placeholder"]

PathOrFile = str | os.PathLike[str] | IO[bytes]

# Python 2 / protocol < 3 module names, renamed the way pickle's own find_class does.
_MODULE_RENAMES = {"__builtin__": "builtins", "copy_reg": "copyreg"}

# Modules whose globals are real code: never turned into placeholders, refused unless allowed.
_CODE_MODULES = frozenset(
    """builtins os posix nt posixpath ntpath genericpath subprocess sys shutil importlib runpy socket
    pty code codeop codecs _codecs pickle _pickle pickletools marshal ctypes types functools operator
    io _io pathlib tempfile multiprocessing threading _thread signal webbrowser inspect pdb bdb timeit
    platform copyreg collections asyncio ssl urllib http ftplib smtplib telnetlib zipimport pkgutil
    site sysconfig gc weakref abc contextlib glob fnmatch select selectors mmap resource fcntl termios
    tty readline rlcompleter cmd shlex torch numpy typing dataclasses enum linecache traceback
    warnings logging unittest doctest trace cProfile profile tracemalloc faulthandler""".split()
)


def _numpy2_module(module: str) -> str:
    """numpy 1.x pickles name ``numpy.core.*``; numpy 2 moved it to ``numpy._core.*``."""
    if module == "numpy.core" or module.startswith("numpy.core."):
        return "numpy._core" + module[len("numpy.core") :]
    return module


def _latin1_encode(obj: str, encoding: str = "latin1", errors: str = "strict") -> bytes:
    """``_codecs.encode`` as protocol-2 pickles use it for bytes; other codecs are refused."""
    if not isinstance(obj, str) or encoding not in ("latin1", "latin-1") or errors != "strict":
        raise pickle.UnpicklingError(f"refused _codecs.encode with encoding {encoding!r}")
    return obj.encode("latin1")


@functools.lru_cache(maxsize=1)
def _plain_globals() -> dict[tuple[str, str], Any]:
    """Globals that build plain data: builtin containers and numpy arrays/scalars/dtypes."""
    import numpy as np
    from numpy._core import multiarray, numeric

    allowed: dict[tuple[str, str], Any] = {
        ("builtins", t.__name__): t
        for t in (dict, list, tuple, set, frozenset, str, bytes, bytearray, int, float, complex, bool)
    }
    allowed[("collections", "OrderedDict")] = collections.OrderedDict
    allowed[("_codecs", "encode")] = _latin1_encode
    allowed[("numpy", "ndarray")] = np.ndarray
    allowed[("numpy", "dtype")] = np.dtype
    allowed[("numpy._core.multiarray", "_reconstruct")] = multiarray._reconstruct
    allowed[("numpy._core.multiarray", "scalar")] = multiarray.scalar
    allowed[("numpy._core.numeric", "_frombuffer")] = numeric._frombuffer
    return allowed


def _rebuild_from_type_v2(func: Any, new_type: Any, args: tuple, state: Any) -> Any:
    """``torch._tensor._rebuild_from_type_v2`` restricted to plain tensors and parameters."""
    import torch

    if new_type not in (torch.Tensor, torch.nn.Parameter) or func not in _TORCH_REBUILDS:
        raise pickle.UnpicklingError("refused a tensor subclass rebuild")
    return torch._tensor._rebuild_from_type_v2(func, new_type, args, state)


_TORCH_REBUILDS: set[Any] = set()


@functools.lru_cache(maxsize=1)
def _torch_globals() -> dict[tuple[str, str], Any]:
    """Plain data plus what ``torch.save`` writes for tensors: rebuild functions, dtypes, sizes."""
    import torch

    allowed = dict(_plain_globals())
    for name in (
        "_rebuild_tensor",
        "_rebuild_tensor_v2",
        "_rebuild_tensor_v3",
        "_rebuild_parameter",
        "_rebuild_parameter_with_state",
        "_rebuild_meta_tensor_no_storage",
        "_rebuild_device_tensor_from_cpu_tensor",
        "_rebuild_device_tensor_from_numpy",
    ):
        func = getattr(torch._utils, name, None)
        if func is not None:
            allowed[("torch._utils", name)] = func
            _TORCH_REBUILDS.add(func)
    allowed[("torch._tensor", "_rebuild_from_type_v2")] = _rebuild_from_type_v2
    allowed[("torch", "Size")] = torch.Size
    allowed[("torch", "device")] = torch.device
    allowed[("torch", "Tensor")] = torch.Tensor
    allowed[("torch", "UntypedStorage")] = torch.UntypedStorage
    allowed[("torch.nn.parameter", "Parameter")] = torch.nn.Parameter
    allowed[("torch.serialization", "_get_layout")] = torch.serialization._get_layout
    for value in vars(torch).values():
        if isinstance(value, (torch.dtype, torch.qscheme)):
            module, _, name = str(value).rpartition(".")
            allowed[(module, name)] = value
    allowed[("collections", "Counter")] = collections.Counter
    allowed[("collections", "defaultdict")] = collections.defaultdict
    for path_cls in (pathlib.PurePosixPath, pathlib.PosixPath, pathlib.PureWindowsPath):
        for module in ("pathlib", "pathlib._local"):  # Python 3.13 moved the classes
            allowed[(module, path_cls.__name__)] = path_cls
    for cls in (datetime.datetime, datetime.date, datetime.time, datetime.timedelta, datetime.timezone):
        allowed[("datetime", cls.__name__)] = cls
    return allowed


def _is_dunder(name: str) -> bool:
    """``__class__``, ``__globals__``, ``__reduce__``...: the handles that reach real code."""
    return name.startswith("__") or name.endswith("__")


class _InertMeta(type):
    """Metaclass of placeholders: calling the class (REDUCE / INST with args) is refused."""

    _lfb_source: str
    _lfb_target: str

    def __call__(cls, *args: Any, **kwargs: Any) -> Any:
        raise LfbError(f"refused to load {cls._lfb_source}: the pickle would call {cls._lfb_target}")


class Placeholder(Inert, metaclass=_InertMeta):
    """Stands in for a class this process does not have; holds whatever state the pickle gave it."""

    _lfb_source = "<placeholder>"
    _lfb_target = "<unknown>"

    def __new__(cls, *args: Any, **kwargs: Any) -> Placeholder:
        obj = object.__new__(cls)
        obj.__dict__["_lfb_args"] = args
        return obj

    def __setstate__(self, state: Any) -> None:
        if isinstance(state, tuple) and len(state) == 2 and isinstance(state[1], dict):
            state = {**(state[0] or {}), **state[1]}  # (dict state, slot state)
        if isinstance(state, dict) and all(isinstance(k, str) and not _is_dunder(k) for k in state):
            self.__dict__.update(state)
        else:
            self.__dict__["_lfb_state"] = state

    def __setitem__(self, key: Any, value: Any) -> None:
        self.__dict__.setdefault("_lfb_items", {})[key] = value

    def append(self, value: Any) -> None:
        self.__dict__.setdefault("_lfb_list", []).append(value)

    def extend(self, values: Any) -> None:
        self.__dict__.setdefault("_lfb_list", []).extend(values)

    def __repr__(self) -> str:
        return f"<placeholder for {type(self)._lfb_target}>"


class RestrictedUnpickler(BoundedUnpickler):
    """Resolves globals only from an allow list; never imports a module named by the pickle.

    The pure-Python base (:class:`~lfbtool._io.pickle_bounds.BoundedUnpickler`) bounds depth, allocation
    and per-opcode work.
    """

    source: str = "<pickle>"
    allow_unknown_classes: bool = False
    allowed: dict[tuple[str, str], Any] = {}

    def __init__(self, file: IO[bytes], **kwargs: Any) -> None:
        super().__init__(file, **kwargs)
        self._placeholders: dict[tuple[str, str], type] = {}

    def find_class(self, module: str, name: str) -> Any:  # noqa: D102 (pickle hook)
        module = _MODULE_RENAMES.get(module, module)
        found = self.allowed.get((_numpy2_module(module), name))
        if found is not None:
            return found
        if self.allow_unknown_classes:
            inert = self._inert_helpers.get((module, name))
            if inert is not None:
                return inert
            top = module.split(".")[0]
            private = top.startswith("_") and top != "__main__"
            dunder = any(_is_dunder(part) for part in name.split("."))
            if top not in _CODE_MODULES and not private and not dunder:
                return self._placeholder(module, name)
        raise LfbError(
            f"{self.source}: refused to load: the pickle references {module}.{name}, which is not plain data"
        )

    @property
    def _inert_helpers(self) -> dict[tuple[str, str], Any]:
        """What protocol 0-2 pickles of unknown classes call; each only ever yields placeholders."""
        return {
            ("builtins", "getattr"): self._inert_getattr,
            ("copyreg", "_reconstructor"): self._inert_reconstructor,
            ("copyreg", "__newobj__"): self._inert_newobj,
            ("builtins", "object"): object,  # the base in _reconstructor's arguments
        }

    def _refuse(self, what: str) -> LfbError:
        return LfbError(f"{self.source}: refused to load: the pickle calls {what}, which is not plain data")

    def _inert_getattr(self, target: Any, name: Any, *default: Any) -> type:
        """``getattr(Placeholder, "min")`` (a method reference) -> the placeholder ``Cls.min``."""
        cls = target if isinstance(target, _InertMeta) else type(target)
        if default or not isinstance(cls, _InertMeta) or not isinstance(name, str):
            raise self._refuse(f"getattr on {type(target).__name__} {name!r:.60}")
        if _is_dunder(name) or not name.isidentifier():
            raise self._refuse(f"getattr(..., {name!r:.60})")
        return self._placeholder(cls.__module__, f"{cls.__qualname__}.{name}")

    def _inert_newobj(self, cls: Any, *args: Any) -> Placeholder:
        """``copyreg.__newobj__(cls, *args)`` spelled out by REDUCE: only for placeholder classes."""
        if not isinstance(cls, _InertMeta):
            raise self._refuse(f"copyreg.__newobj__ on {cls!r:.60}")
        return cls.__new__(cls, *args)

    def _inert_reconstructor(self, cls: Any, base: Any, state: Any) -> Placeholder:
        """Protocol 0/1 ``copyreg._reconstructor(cls, object, state)`` for a placeholder class."""
        if not isinstance(cls, _InertMeta):
            raise self._refuse(f"copyreg._reconstructor on {cls!r:.60}")
        obj = cls.__new__(cls)
        if state is not None:  # the base's value: a dict subclass's items, a list subclass's elements
            obj.__dict__["_lfb_items" if isinstance(state, dict) else "_lfb_state"] = state
        return obj

    def _placeholder(self, module: str, name: str) -> type:
        """One inert class per module.qualname and load, created here without importing anything."""
        key = (module, name)
        if key not in self._placeholders:
            cls = _InertMeta(
                name.rpartition(".")[2] or "Unknown",
                (Placeholder,),
                {"_lfb_source": self.source, "_lfb_target": f"{module}.{name}", "__module__": module},
            )
            cls.__qualname__ = name
            self._placeholders[key] = cls
        return self._placeholders[key]


def _describe(path_or_file: PathOrFile) -> str:
    if isinstance(path_or_file, (str, os.PathLike)):
        return os.fspath(path_or_file)
    return str(getattr(path_or_file, "name", "<stream>"))


def _read_all(path_or_file: PathOrFile, source: str) -> bytes:
    try:
        if isinstance(path_or_file, (str, os.PathLike)):
            with open(path_or_file, "rb") as handle:
                return handle.read()
        return path_or_file.read()
    except FileNotFoundError as exc:
        raise LfbError(f"{source}: no such file") from exc
    except IsADirectoryError as exc:
        raise LfbError(f"{source}: is a directory, expected a pickle file") from exc
    except OSError as exc:
        raise LfbError(f"{source}: cannot read ({exc.strerror or exc})") from exc


def read_bytes(path_or_file: PathOrFile) -> bytes:
    """The whole file, or an LfbError naming it: for a caller that looks at the bytes before
    :func:`load_plain` (which then need not read them again)."""
    return _read_all(path_or_file, _describe(path_or_file))


def load_plain(path_or_file: PathOrFile, *, data: bytes | None = None) -> object:
    """Unpickle plain data (numpy arrays, builtin containers): MMAction2 proposal pkls and the like.

    The C unpickler behind guards (:mod:`lfbtool._io.pickle_fast`) loads what fits its profile, at about
    the speed of ``pickle.load``; anything else goes through the bounded pure-Python unpickler, which
    refuses bombs and code with a message naming the file. ``data``: the file's bytes, when the caller
    has read them already (:func:`read_bytes`); ``path_or_file`` then only names the file.
    """
    source = _describe(path_or_file)
    if data is None:
        data = _read_all(path_or_file, source)
    try:
        return pickle_fast.load(data)
    except pickle_fast.Unsupported:
        pass
    unpickler_cls = type(
        "PlainUnpickler", (RestrictedUnpickler,), {"source": source, "allowed": _plain_globals()}
    )
    try:
        return unpickler_cls(io.BytesIO(data)).load()
    except LfbError:
        raise
    except Exception as exc:  # corrupt or truncated pickles raise many different types
        raise LfbError(f"{source}: not a readable pickle ({type(exc).__name__}: {exc})") from exc


def _pickle_module(source: str, allow_unknown_classes: bool, budget: Budget) -> types.SimpleNamespace:
    """What ``torch.load`` needs from ``pickle_module``: ``Unpickler``, ``load`` and ``__name__``.

    Every pickle of the file (legacy files hold several) draws on one ``budget``.
    """
    unpickler_cls = type(
        "TorchUnpickler",
        (RestrictedUnpickler,),
        {"source": source, "allowed": _torch_globals(), "allow_unknown_classes": allow_unknown_classes,
         "shared_budget": budget},
    )

    def load(file: IO[bytes], **kwargs: Any) -> Any:
        return unpickler_cls(file, **kwargs).load()

    return types.SimpleNamespace(__name__=__name__, Unpickler=unpickler_cls, load=load)


def _check_archive(path: str) -> None:
    """TorchScript archives would go to ``torch.jit.load``; compressed entries could be zip bombs."""
    if not zipfile.is_zipfile(path):
        return
    with zipfile.ZipFile(path) as archive:
        infos = archive.infolist()
    if any(i.filename.split("/")[-1] == "constants.pkl" or "/code/" in i.filename for i in infos):
        raise LfbError(f"{path}: is a TorchScript archive; pass a plain state_dict checkpoint")
    unpacked, size = sum(i.file_size for i in infos), os.path.getsize(path)
    if unpacked > 2 * size + (1 << 20):
        raise LfbError(
            f"{path}: refused to load: its zip entries unpack to {unpacked:,} bytes from a {size:,}-byte file"
        )


def torch_load(path: str | os.PathLike[str], *, allow_unknown_classes: bool) -> object:
    """``torch.load`` on CPU through the restricted unpickler; every failure is an LfbError naming path."""
    import torch

    source = os.fspath(path)
    if not os.path.exists(source):
        raise LfbError(f"{source}: no such file")
    if os.path.isdir(source):
        raise LfbError(f"{source}: is a directory, expected a checkpoint file")
    try:
        _check_archive(source)
        budget = Budget(source, os.path.getsize(source))
        with open(source, "rb") as handle:
            return torch.load(
                handle,
                map_location="cpu",
                weights_only=False,
                pickle_module=_pickle_module(source, allow_unknown_classes, budget),
            )
    except LfbError:
        raise
    except Exception as exc:  # torch/pickle raise RuntimeError, UnpicklingError, EOFError, ...
        raise LfbError(f"{source}: not a readable checkpoint ({type(exc).__name__}: {exc})") from exc
