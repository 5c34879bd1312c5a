"""Read a ``torch.save`` zip archive of tensors and plain containers into numpy, without torch.

An MMAction2 bank (``lfb_<mode>.pkl``) is a ``torch.save`` file: a zip holding ``<name>/data.pkl``,
the object tree in which each tensor is a call ``torch._utils._rebuild_tensor_v2(storage, offset,
size, stride, ...)`` whose storage is a persistent id ``("storage", torch.<Type>Storage, key,
location, numel)``, and one raw entry ``<name>/data/<key>`` per storage. ``data.pkl`` goes through
the fast path of :mod:`lfbtool._io.pickle_fast` (opcode scan, C unpickler behind guards) or, for what that
leaves, the restricted, bounded unpickler of :mod:`lfbtool._io.safe_pickle` (allow list of plain-data
globals, allocation budget, nesting depth, storages no larger than the file), with the tensor globals
resolved to numpy stand-ins here instead of to torch, so that ``lfbtool import`` starts without torch. Every
tensor is checked to lie inside its storage before numpy views it. A legacy (before torch 1.6,
not a zip) file is not read here; :mod:`lfbtool.bank.mmaction_import` reads that one with torch.
"""

from __future__ import annotations

import io
import math
import os
import zipfile
from dataclasses import dataclass
from typing import Any

import numpy as np

from lfbtool._io import pickle_fast
from lfbtool._io.pickle_bounds import Budget
from lfbtool._io.safe_pickle import RestrictedUnpickler, _check_archive, _plain_globals
from lfbtool.errors import LfbError

__all__ = ["StoredTensor", "load_tensor_archive"]

#: ``torch.<Type>Storage`` -> (torch's dtype name, numpy dtype; None where numpy has none, with its size).
_STORAGES: dict[str, tuple[str, str | None, int]] = {
    "HalfStorage": ("torch.float16", "f2", 2),
    "FloatStorage": ("torch.float32", "f4", 4),
    "DoubleStorage": ("torch.float64", "f8", 8),
    "BFloat16Storage": ("torch.bfloat16", None, 2),
    "ByteStorage": ("torch.uint8", "u1", 1),
    "CharStorage": ("torch.int8", "i1", 1),
    "ShortStorage": ("torch.int16", "i2", 2),
    "IntStorage": ("torch.int32", "i4", 4),
    "LongStorage": ("torch.int64", "i8", 8),
    "BoolStorage": ("torch.bool", "?", 1),
    "ComplexFloatStorage": ("torch.complex64", "c8", 8),
    "ComplexDoubleStorage": ("torch.complex128", "c16", 16),
}


@dataclass(frozen=True, slots=True)
class StoredTensor:
    """A tensor of the archive: torch's dtype name (``"torch.float16"``), its shape, and its values as
    a read-only numpy array (None for a dtype numpy lacks, such as bfloat16)."""

    dtype: str
    shape: tuple[int, ...]
    array: np.ndarray | None

    def dim(self) -> int:
        return len(self.shape)

    def __setstate__(self, state: Any) -> None:  # dataclass would add one that rewrites the fields
        raise TypeError("a StoredTensor is made by the archive reader only")


class _StorageType:
    """What the global ``torch.<Type>Storage`` resolves to: a dtype, never a callable, and no attribute a
    pickle can set (the C unpickler of the fast path applies BUILD to whatever is on its stack)."""

    __slots__ = ("torch_dtype", "numpy_dtype", "dtype")

    def __init__(self, name: str) -> None:
        torch_dtype, numpy_dtype, itemsize = _STORAGES[name]
        object.__setattr__(self, "torch_dtype", torch_dtype)
        object.__setattr__(self, "numpy_dtype", np.dtype(numpy_dtype) if numpy_dtype else None)
        object.__setattr__(self, "dtype", np.dtype(f"V{itemsize}"))  # its itemsize: what the bounded unpickler charges

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"{name} of a storage type is fixed")


@dataclass(frozen=True, slots=True)
class _Storage:
    kind: _StorageType
    numel: int
    values: np.ndarray | None

    def __setstate__(self, state: Any) -> None:  # a BUILD must not swap the values the views trust
        raise TypeError("a storage is made by the archive reader only")


def _contiguous(size: tuple[int, ...]) -> tuple[int, ...]:
    """The strides (in items) of a C-contiguous tensor of ``size``."""
    strides, step = [], 1
    for n in reversed(size):
        strides.append(step)
        step *= n
    return tuple(reversed(strides))


def _ints(value: Any) -> bool:
    return isinstance(value, tuple) and all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in value)


class _Reader:
    """One archive being read: its zip, the storages read so far, and the refusals naming the file."""

    def __init__(self, path: str, archive: zipfile.ZipFile, prefix: str, budget: Budget) -> None:
        self.path, self.archive, self.prefix, self.budget = path, archive, prefix, budget
        self.storages: dict[str, _Storage] = {}
        order = "little"
        if f"{prefix}/byteorder" in archive.namelist():
            order = archive.read(f"{prefix}/byteorder").decode("ascii", "replace").strip()
        if order not in ("little", "big"):
            raise budget.refuse(f"byteorder {order[:20]!r} is neither little nor big")
        self.order = "<" if order == "little" else ">"

    def tensor_globals(self) -> dict[tuple[str, str], Any]:
        """Storage types and rebuild functions: closures of this load, so a BUILD on one leaves nothing behind."""

        def rebuild_tensor(*args: Any) -> StoredTensor:
            return self.rebuild_tensor(*args)

        def rebuild_parameter(*args: Any) -> StoredTensor:
            return self.rebuild_parameter(*args)

        found: dict[tuple[str, str], Any] = {("torch", name): _StorageType(name) for name in _STORAGES}
        found[("torch._utils", "_rebuild_tensor")] = found[("torch._utils", "_rebuild_tensor_v2")] = rebuild_tensor
        found[("torch._utils", "_rebuild_parameter")] = rebuild_parameter
        return found

    def globals(self) -> dict[tuple[str, str], Any]:
        return {**_plain_globals(), **self.tensor_globals()}

    def load_storage(self, saved_id: Any) -> _Storage:
        """``("storage", torch.<Type>Storage, key, location, numel)``: its entry, exactly numel items long."""
        if (
            type(saved_id) is not tuple or len(saved_id) != 5 or not isinstance(saved_id[1], _StorageType)
            or not isinstance(saved_id[2], str) or type(saved_id[4]) is not int or saved_id[4] < 0
        ):
            raise self.budget.refuse(f"a storage id {saved_id!r:.80} that torch.save does not write")
        _, kind, key, _, numel = saved_id
        if key not in self.storages:
            name = f"{self.prefix}/data/{key}"
            try:
                info = self.archive.getinfo(name)
            except KeyError:
                raise self.budget.refuse(f"storage {key!r:.40} has no entry {name}") from None
            expected = numel * kind.dtype.itemsize
            if info.file_size != expected:
                raise self.budget.refuse(f"storage {key!r:.40} holds {info.file_size} bytes, its id says {expected}")
            data = self.archive.read(name)
            values = None
            if kind.numpy_dtype is not None:
                values = np.frombuffer(data, dtype=kind.numpy_dtype.newbyteorder(self.order))
                if len(values) != numel:  # the views below trust numel
                    raise self.budget.refuse(f"storage {key!r:.40} has {len(values)} items, its id says {numel}")
            self.storages[key] = _Storage(kind, numel, values)
        return self.storages[key]

    def rebuild_tensor(self, storage: Any, offset: Any, size: Any, stride: Any, *rest: Any) -> StoredTensor:
        """``_rebuild_tensor_v2(storage, offset, size, stride, requires_grad, hooks[, metadata])``: a view
        that must lie inside the storage (as_strided would read any memory it is told to)."""
        if not isinstance(storage, _Storage) or len(rest) > 3:
            raise self.budget.refuse("a tensor rebuild whose arguments torch.save does not write")
        if not (_ints((offset,)) and _ints(size) and _ints(stride) and len(size) == len(stride)):
            raise self.budget.refuse(f"a tensor of offset {offset!r:.20}, size {size!r:.40}, stride {stride!r:.40}")
        count = math.prod(size)
        last = offset + sum((n - 1) * s for n, s in zip(size, stride, strict=True)) if count else offset - 1
        if last >= storage.numel or (storage.values is not None and len(storage.values) != storage.numel):
            raise self.budget.refuse(f"a tensor of size {size} reaches past its storage of {storage.numel} items")
        array = None
        if storage.values is not None:
            if stride == _contiguous(size):  # MMAction2's feature vectors: a slice, 10x faster than as_strided
                array = storage.values[offset : offset + count].reshape(size)
            else:
                item = storage.values.itemsize
                array = np.lib.stride_tricks.as_strided(
                    storage.values[offset:] if count else storage.values[:0], shape=size,
                    strides=tuple(s * item for s in stride), writeable=False,
                )
        return StoredTensor(storage.kind.torch_dtype, size, array)

    def rebuild_parameter(self, data: Any, *rest: Any) -> StoredTensor:
        if not isinstance(data, StoredTensor):
            raise self.budget.refuse("a parameter that is not a tensor")
        return data


def load_tensor_archive(path: str | os.PathLike[str]) -> Any:
    """The object a ``torch.save`` zip archive holds, tensors as :class:`StoredTensor`; no code runs.

    Anything else than plain containers, numpy data and tensors is one LfbError naming ``path``.
    """
    source = os.fspath(path)
    _check_archive(source)
    budget = Budget(source, os.path.getsize(source))
    try:
        archive = zipfile.ZipFile(source)
    except (OSError, zipfile.BadZipFile) as error:
        raise LfbError(f"{source}: not a readable torch.save archive ({error})") from error
    with archive:
        pickles = [n for n in archive.namelist() if n.endswith("/data.pkl") and n.count("/") == 1]
        if len(pickles) != 1:
            raise LfbError(f"{source}: not a torch.save archive (no single <name>/data.pkl entry)")
        reader = _Reader(source, archive, pickles[0][: -len("/data.pkl")], budget)
        data = archive.read(pickles[0])
        try:  # the C unpickler behind guards, as for proposals; the bounded one gives any refusal
            return pickle_fast.load(data, extra_globals=reader.tensor_globals(), persistent_load=reader.load_storage,
                                    extra_leaves=(StoredTensor,))
        except pickle_fast.Unsupported:
            reader.storages.clear()
        unpickler_cls = type("ArchiveUnpickler", (RestrictedUnpickler,),
                             {"source": source, "allowed": reader.globals(), "shared_budget": budget})
        try:
            unpickler = unpickler_cls(io.BytesIO(data))
            unpickler.persistent_load = reader.load_storage
            return unpickler.load()
        except LfbError:
            raise
        except Exception as error:  # corrupt or truncated pickles raise many different types
            raise LfbError(f"{source}: not a readable pickle ({type(error).__name__}: {error})") from error
