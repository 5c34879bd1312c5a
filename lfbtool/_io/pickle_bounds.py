"""Bounds for untrusted pickles: nesting depth, allocation relative to the file size, work per opcode.

A few hundred bytes of pickle can ask for ``bytearray(10**10)``, an array of 10**12 elements, a
storage larger than the file, or 100k nested lists whose repr/iteration/freeing crashes. The
unpickler here subclasses the pure-Python one (its memo is a dict, so a huge memo index allocates
nothing) and overrides opcodes in its own copy of the dispatch table (CPython's is left as it is),
with checks on every call, container mutation, length claim and dtype state.
"""

from __future__ import annotations

import collections
import itertools
import math
import pickle
from collections.abc import Callable
from typing import IO, Any

import numpy as np

from lfbtool.errors import LfbError

MAX_DEPTH = 200  # configs nest ~10 deep; repr/deepcopy recurse ~1000 deep
SLACK_BYTES = 16 << 20  # what any pickle may allocate beyond its size (small files, metadata)
ALLOC_FACTOR = 8  # bytes of constructed data per byte of file
MAX_PROPAGATION = 1_000_000  # depth updates pushed up to parents; legit pickles need ~0
_MUTABLE = (list, dict, set)
_CONTAINERS = (tuple, list, dict, set, frozenset)
_ADD_TARGETS = (list, dict, set)
_LEAVES = (str, bytes, int, float, complex, type(None), np.generic, type)  # APPEND(S)/SETITEM(S)/ADDITEMS; placeholders are allowed too


class Budget:
    """Bytes a load may construct (shared by the pickles of one file), and the storage bytes it may claim."""

    def __init__(self, source: str, file_size: int) -> None:
        self.source = source
        self.file_size = file_size
        self.limit = ALLOC_FACTOR * file_size + SLACK_BYTES
        self.spent = 0
        self.storage_keys: set[Any] = set()
        self.storage_bytes = 0

    def refuse(self, what: str) -> LfbError:
        return LfbError(f"{self.source}: refused to load: {what}")

    def charge(self, nbytes: int, what: str) -> None:
        self.spent += max(int(nbytes), 0)
        if self.spent > self.limit:
            raise self.refuse(
                f"{what} would build {self.spent:,} bytes from a {self.file_size:,}-byte file (a pickle bomb)"
            )

    def claim_storage(self, key: Any, nbytes: int) -> None:
        """Tensor storages come from the file: all of them together cannot exceed its size."""
        if key in self.storage_keys:
            return
        self.storage_keys.add(key)
        self.storage_bytes += max(int(nbytes), 0)
        if self.storage_bytes > self.file_size:
            raise self.refuse(
                f"tensor storages claim {self.storage_bytes:,} bytes, more than the {self.file_size:,}-byte file"
            )


class Inert:
    """Base of :class:`lfbtool._io.safe_pickle.Placeholder`: an object built from data, never from code."""


_NESTING = (*_CONTAINERS, Inert)
_MUTATING = (*_MUTABLE, Inert, np.ndarray)


def _size_of(value: Any) -> int:
    """Bytes a copy of ``value`` takes, roughly: what a copying constructor allocates."""
    if isinstance(value, (str, bytes, bytearray)):
        return len(value)
    if isinstance(value, np.ndarray):
        return int(value.nbytes)
    if isinstance(value, _CONTAINERS):
        return 8 * len(value)
    return 0


def _shape_bytes(shape: Any, dtype: Any = None) -> int:
    if isinstance(shape, (int, np.integer)):
        shape = (shape,)
    if not isinstance(shape, (tuple, list)) or not all(isinstance(n, (int, np.integer)) for n in shape):
        return 0  # numpy refuses it itself
    try:
        itemsize = np.dtype(dtype).itemsize if dtype is not None else 8
    except Exception:  # noqa: BLE001 - numpy rejects a bad dtype on its own
        itemsize = 8
    return math.prod(max(int(n), 0) for n in shape) * max(itemsize, 1)


def call_bytes(func: Any, args: tuple) -> int:
    """What ``func(*args)`` will allocate, judged before the call."""
    from numpy._core import multiarray

    if func in (bytes, bytearray) and args and isinstance(args[0], int):
        return args[0]
    if func is multiarray._reconstruct and len(args) == 3:
        return _shape_bytes(args[1], args[2] if not isinstance(args[2], bytes) else None)
    if func is np.ndarray and args:
        return _shape_bytes(args[0], args[1] if len(args) > 1 else None)
    return sum(_size_of(a) for a in args)


class BoundedUnpickler(pickle._Unpickler):  # type: ignore[name-defined]
    """Pure-Python unpickler whose container ops track nesting depth and whose calls are charged."""

    source: str = "<pickle>"

    def __init__(self, file: IO[bytes], *, budget: Budget | None = None, **kwargs: Any) -> None:
        super().__init__(file, **kwargs)
        size = _remaining(file)
        budget = budget or getattr(self, "shared_budget", None)
        self._budget = budget or Budget(self.source, size if size is not None else 0)
        self._nodes: dict[int, list] = {}  # id -> [obj, depth, parent ids]
        self._steps = 0
        read = self._file_read
        limit = size if size is not None else None

        def bounded_read(n: int = -1) -> bytes:
            if limit is not None and n > limit:
                raise self._budget.refuse(f"a length field claims {n:,} bytes, more than the file holds")
            return read(n)

        self._file_read = bounded_read

    # -- persistent ids (torch storages) ------------------------------------------------------------------
    @property
    def persistent_load(self) -> Any:  # noqa: D102
        return self._persistent

    @persistent_load.setter
    def persistent_load(self, func: Any) -> None:
        def bounded(saved_id: Any) -> Any:
            if not isinstance(saved_id, tuple) or not saved_id or saved_id[0] not in ("storage", b"storage"):
                raise self._budget.refuse(f"unsupported persistent id {type(saved_id).__name__}")
            storage_type, key, numel = saved_id[1], saved_id[2], saved_id[4]
            if not isinstance(numel, int) or numel < 0:
                raise self._budget.refuse(f"storage {key!r:.40} has element count {numel!r:.40}")
            dtype = getattr(storage_type, "dtype", None)
            itemsize = getattr(dtype, "itemsize", 1)
            itemsize = itemsize if isinstance(itemsize, int) else 1
            self._budget.claim_storage(key, numel * itemsize)
            return func(saved_id)

        self._persistent = bounded

    def _persistent(self, pid: Any) -> Any:
        raise pickle.UnpicklingError("unsupported persistent id encountered")

    # -- depth -------------------------------------------------------------------------------------------
    def _children(self, obj: Any) -> Any:
        if isinstance(obj, dict):
            return itertools.chain(obj.keys(), obj.values())
        if isinstance(obj, (tuple, list, set, frozenset)):
            return obj
        if isinstance(obj, np.ndarray):
            return obj.flat if obj.dtype == object else ()
        if _is_placeholder(obj):
            return obj.__dict__.values()
        return ()

    def _depth(self, obj: Any) -> int:
        if isinstance(obj, _LEAVES):
            return 0
        node = self._nodes.get(id(obj))
        if node is not None and node[0] is obj:
            return node[1]
        if not self._is_container(obj):
            return 0
        deepest = 0
        for child in self._children(obj):
            if not isinstance(child, _LEAVES):
                deepest = max(deepest, self._depth(child))
        depth = 1 + deepest
        self._check_depth(depth)
        if depth > 1 or self._is_mutable(obj) or (isinstance(obj, (tuple, frozenset)) and len(obj) > 32):
            self._nodes[id(obj)] = [obj, depth, []]  # flat small tuples are cheaper to rescan than to keep
        return depth

    @staticmethod
    def _is_container(obj: Any) -> bool:
        return isinstance(obj, _NESTING) or (isinstance(obj, np.ndarray) and obj.dtype == object)

    @staticmethod
    def _is_mutable(obj: Any) -> bool:
        return isinstance(obj, _MUTATING)

    def _check_depth(self, depth: int) -> None:
        if depth > MAX_DEPTH:
            raise self._budget.refuse(f"data nests deeper than {MAX_DEPTH} levels (or refers back to itself)")

    def _added(self, target: Any, children: list[Any]) -> None:
        """``children`` went into ``target``: raise its depth, remember it as their parent, push it up."""
        if not self._is_container(target):  # an array of numbers, a dtype: its state is not nested data
            return
        depth = self._depth(target)
        new = 1 + max((self._depth(c) for c in children), default=0)
        for child in children:
            if self._is_mutable(child) and self._is_container(child):
                self._depth(child)
                self._nodes[id(child)][2].append(id(target))
        if new <= depth:
            return
        todo = [(target, new)]
        while todo:
            obj, value = todo.pop()
            node = self._nodes[id(obj)]
            if value <= node[1]:
                continue
            self._check_depth(value)
            node[1] = value
            for parent in node[2]:
                self._steps += 1
                if self._steps > MAX_PROPAGATION:
                    raise self._budget.refuse("the pickle rewires its containers too often")
                todo.append((self._nodes[parent][0], value + 1))

    # -- opcodes -----------------------------------------------------------------------------------------
    def _new_top(self) -> None:
        self._depth(self.stack[-1])

    def _checked_call(self, func: Any, args: tuple) -> Any:
        if not isinstance(args, tuple):
            raise self._budget.refuse(f"call arguments of type {type(args).__name__}")
        self._budget.charge(call_bytes(func, args), f"calling {getattr(func, '__name__', func)!s:.40}")
        return func(*args)

    def _instantiate(self, klass: Any, args: list) -> None:
        """INST/OBJ: a placeholder without arguments is created inertly; anything else is a checked call."""
        if _is_placeholder_class(klass) and not args:
            self.append(klass.__new__(klass))
        else:
            self.append(self._checked_call(klass, tuple(args)))

    def _add_target(self, target: Any) -> None:
        if not (isinstance(target, _ADD_TARGETS) or _is_placeholder(target)):
            raise self._budget.refuse(f"the pickle adds items to a {type(target).__name__}, which is not a container")

    def _append_pending(self) -> tuple[Any, list]:
        self._add_target(self.stack[-2])
        return self.stack[-2], [self.stack[-1]]

    def _marked_pending(self) -> tuple[Any, list]:
        target = self.metastack[-1][-1]
        self._add_target(target)
        return target, list(self.stack)

    def _setitem_pending(self) -> tuple[Any, list]:
        self._add_target(self.stack[-3])
        return self.stack[-3], [self.stack[-2], self.stack[-1]]

    # -- opcodes: handlers of this class, in its own copy of the dispatch table ------------------------
    dispatch = dict(pickle._Unpickler.dispatch)  # type: ignore[attr-defined]  # CPython's stays as it is

    def _then_track(base: Callable[[Any], None]) -> Callable[[Any], None]:  # class-body helper
        def handler(self: BoundedUnpickler) -> None:
            base(self)
            self._new_top()

        return handler

    def _then_add(base: Callable[[Any], None], pending: Callable[[Any], tuple]) -> Callable[[Any], None]:
        def handler(self: BoundedUnpickler) -> None:
            target, children = pending(self)
            base(self)
            self._added(target, children)

        return handler

    for _op in (pickle.TUPLE, pickle.TUPLE1, pickle.TUPLE2, pickle.TUPLE3, pickle.LIST, pickle.DICT,
                pickle.FROZENSET, pickle.EMPTY_LIST, pickle.EMPTY_DICT, pickle.EMPTY_SET, pickle.OBJ, pickle.INST):
        dispatch[_op[0]] = _then_track(dispatch[_op[0]])
    dispatch[pickle.APPEND[0]] = _then_add(dispatch[pickle.APPEND[0]], _append_pending)
    dispatch[pickle.SETITEM[0]] = _then_add(dispatch[pickle.SETITEM[0]], _setitem_pending)
    for _op in (pickle.APPENDS, pickle.SETITEMS, pickle.ADDITEMS):
        dispatch[_op[0]] = _then_add(dispatch[_op[0]], _marked_pending)
    del _op, _then_track, _then_add

    def load_build(self) -> None:
        """BUILD: an array's state is charged, a dtype's is checked, anything but plain data is refused."""
        inst, state = self.stack[-2], self.stack[-1]
        if isinstance(inst, np.ndarray):
            if isinstance(state, tuple) and len(state) == 5:
                self._budget.charge(_shape_bytes(state[1], state[2]), "an array's state")
        elif isinstance(inst, np.dtype):
            _check_dtype_state(self._budget, inst, state)
        elif isinstance(inst, collections.OrderedDict):
            # torch.save(model.state_dict()): the OrderedDict carries ``_metadata`` (BN versions) as attributes
            if not (isinstance(state, dict) and all(isinstance(k, str) and not k.startswith("__") for k in state)):
                raise self._budget.refuse("the pickle sets an OrderedDict's state to something other than attributes")
        elif not _is_placeholder(inst):
            raise self._budget.refuse(f"the pickle sets the state of a {type(inst).__name__}, which is not plain data")
        pickle._Unpickler.load_build(self)  # type: ignore[attr-defined]
        if isinstance(inst, np.dtype):
            _check_built_dtype(self._budget, inst)
        self._added(inst, [state])

    dispatch[pickle.BUILD[0]] = load_build

    def load_reduce(self) -> None:
        args = self.stack.pop()
        self.stack[-1] = self._checked_call(self.stack[-1], args)
        self._new_top()

    dispatch[pickle.REDUCE[0]] = load_reduce

    def load_newobj(self) -> None:
        args = self.stack.pop()
        cls = self.stack.pop()
        if not _is_placeholder_class(cls) and cls not in (object, dict, list, set):
            raise self._budget.refuse(f"the pickle creates a {getattr(cls, '__name__', cls)!s:.60} directly")
        self.stack.append(cls.__new__(cls, *args))
        self._new_top()

    dispatch[pickle.NEWOBJ[0]] = load_newobj

    def load_newobj_ex(self) -> None:
        kwargs = self.stack.pop()
        args = self.stack.pop()
        cls = self.stack.pop()
        if not _is_placeholder_class(cls):
            raise self._budget.refuse(f"the pickle creates a {getattr(cls, '__name__', cls)!s:.60} directly")
        self.stack.append(cls.__new__(cls, *args, **kwargs))
        self._new_top()

    dispatch[pickle.NEWOBJ_EX[0]] = load_newobj_ex


def _check_dtype_state(budget: Budget, dtype: np.dtype, state: Any) -> None:
    """numpy's ``dtype.__setstate__`` believes what it is told: object flags on a float32 (numpy then
    treats its numbers as pointers), an item size larger than the fields. Plain dtypes must keep the
    flags, item size and alignment numpy gave them; structured ones are checked once built."""
    if not isinstance(state, tuple) or len(state) not in (8, 9):
        raise budget.refuse("a dtype state that numpy does not write")
    subarray, names, fields, elsize, alignment, flags = state[2:8]
    if subarray is None and names is None and fields is None and (
        elsize not in (-1, dtype.itemsize) or alignment not in (-1, dtype.alignment) or flags != dtype.flags
    ):
        raise budget.refuse(f"a dtype state that changes {dtype}'s flags, item size or alignment")


def _check_built_dtype(budget: Budget, dtype: np.dtype) -> None:
    """A structured or sub-array dtype must equal the one numpy's own constructor makes of its parts."""
    if dtype.fields is None and dtype.subdtype is None:
        return
    try:
        if dtype.fields is not None:
            parts = [dtype.fields[n] for n in dtype.names or ()]
            sane = np.dtype({
                "names": list(dtype.names or ()), "formats": [p[0] for p in parts], "offsets": [p[1] for p in parts],
                "titles": [p[2] if len(p) > 2 else None for p in parts], "itemsize": dtype.itemsize,
            }, align=dtype.isalignedstruct)
        else:
            sane = np.dtype(dtype.subdtype)
    except Exception:  # noqa: BLE001 - numpy refuses fields that overlap or overrun the item size
        sane = None
    if sane is None or sane != dtype or sane.flags != dtype.flags or sane.itemsize != dtype.itemsize:
        raise budget.refuse(f"a dtype whose state numpy's constructor would not give ({dtype!s:.60})")


def _is_placeholder(obj: Any) -> bool:
    return isinstance(obj, Inert)


def _is_placeholder_class(cls: Any) -> bool:
    return isinstance(cls, type) and issubclass(cls, Inert)


def _remaining(file: IO[bytes]) -> int | None:
    """Bytes left in ``file`` (None when it cannot seek): no length field may claim more."""
    try:
        pos = file.tell()
        end = file.seek(0, 2)
        file.seek(pos)
        return end - pos
    except Exception:  # noqa: BLE001 - a pipe or a wrapper without seek
        return None
