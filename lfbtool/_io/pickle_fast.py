"""Fast path for plain-data pickles (proposals, bank imports): the C unpickler behind guards, after a scan.

The bounded pure-Python unpickler (:mod:`lfbtool._io.pickle_bounds`) checks every opcode as it runs, which
makes an AVA-train proposals file (210k arrays) 8x slower than ``pickle.load``. Here the C unpickler does
the work, and what it could be tricked into is closed off around it:

* **running code**: every GLOBAL / STACK_GLOBAL goes through ``find_class``, which answers only with the
  guard functions below (never a class, never the real callable); REDUCE calls what is on the stack.
* **memo growth**: the C memo is an array that one LONG_BINPUT index resizes (2 x 8 bytes per index).
  :func:`scan` reads every opcode first and refuses an index above a quarter of the file size, a length
  field beyond the data, and every opcode this profile does not need (protocol 0/1, NEWOBJ, extensions,
  out-of-band buffers, persistent ids unless the caller resolves them).
* **numpy's ``__setstate__``**: dtypes are numpy's builtin numeric singletons, whose ``__setstate__`` is
  a no-op (no forged object flags or item size); an array's state must then carry exactly its bytes.
  What numpy copies per array (up to 1000 bytes, or a str it encodes) is charged to the budget.
* **nesting**: checked after the load, without recursion.

Not bounded here (nor by ``pickle.load`` or the bounded unpickler): CPU time of a big container
referenced many times as a dict key or array index, each use hashing or converting it again.

Anything outside this profile raises :class:`Unsupported`; the caller then runs the bounded unpickler,
which gives the verdict and the message.
"""

from __future__ import annotations

import collections
import contextlib
import functools
import gc
import io
import itertools
import pickle
import re
import sys
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
from numpy._core import multiarray

from lfbtool._io.pickle_bounds import ALLOC_FACTOR, MAX_DEPTH, SLACK_BYTES

__all__ = ["Unsupported", "check_nesting", "collector_paused", "load", "scan"]


class Unsupported(Exception):
    """The pickle leaves the fast profile: use the bounded unpickler instead (not an error by itself)."""


# -- the scan ---------------------------------------------------------------------------------------------
_SWAPPED = ord(">" if sys.byteorder == "little" else "<")  # a dtype state's byte order the singletons lose
_ONE_BYTE = rb"[()0-2NRabdelstu}\]\x85-\x89\x8f-\x91\x93\x94]"  # opcodes without argument, STOP left out
_COUNTED = {ord("X"): 4, ord("B"): 4, 0x8B: 4, 0x8D: 8, 0x8E: 8, 0x96: 8}  # opcodes with a 4- or 8-byte length
_WIDE_FROM = 1 << 20  # files from 1 MB on: lengths below 1024 of those are matched by the regex too
_WIDE_BELOW = 1024


def _byte(value: int) -> bytes:
    return re.escape(bytes([value]))


def _sized(width: int, sizes: range) -> bytes:
    """A ``width``-byte little-endian length ``n`` in ``sizes``, then ``n`` bytes (a lone byte-order mark
    is left to the Python loop). Alternatives are grouped by the high nibble of the first length byte,
    so the regex engine tries ~30 of them rather than up to 256."""
    by_first: dict[int, list[int]] = {}
    for n in sizes:
        by_first.setdefault(n & 0xFF, []).append(n)
    groups: dict[int, list[bytes]] = {}
    for first, ns in by_first.items():
        rest = [
            re.escape(n.to_bytes(width, "little")[1:]) + (b"[^" + _byte(_SWAPPED) + b"]" if n == 1 else b".{%d}" % n)
            for n in ns
        ]
        groups.setdefault(first >> 4, []).append(_byte(first) + b"(?:" + b"|".join(rest) + b")")
    return b"(?:" + b"|".join(
        b"(?=[" + _byte(high << 4) + b"-" + _byte(high << 4 | 15) + b"])(?:" + b"|".join(alts) + b")"
        for high, alts in sorted(groups.items())
    ) + b")"


def _below(bits: int) -> bytes:
    """A little-endian uint32 below ``2**bits`` (16 <= bits <= 32)."""
    if bits >= 24:
        return b"...[\\x00-" + _byte((1 << (bits - 24)) - 1) + b"]"
    return b"..[\\x00-" + _byte((1 << (bits - 16)) - 1) + b"]\\x00"


@functools.lru_cache(maxsize=8)
def _opcodes(bits: int, wide: bool, persistent: bool) -> re.Pattern[bytes]:
    """Runs of opcodes whose size the regex engine can tell, LONG_BINPUT indices below ``2**bits``
    (BINPERSID too where the caller resolves persistent ids: torch's storages).

    Each repetition is a run of argument-less opcodes, then one opcode with an argument: the engine
    takes tens of ns per opcode where a Python loop over them takes ~200.
    """
    put = b"(?:\\x94|q.|r" + _below(bits) + b")"  # MEMOIZE BINPUT LONG_BINPUT
    # what numpy writes between _reconstruct's global and the array's bytes, as one unit: a shortcut
    # of the alternatives below (protocols 2-4), ~30% of the opcodes of a proposals file
    numpy_run = rb"h.h.K\x00\x85" + put + rb"h.\x87" + put + b"R" + put + rb"\(K\x01(?:K.|M..|J....)+\x86" + put + rb"h.\x89"
    short = _sized(1, range(1, 256))
    with_argument = [
        numpy_run,
        rb"[\x80Khq].",  # PROTO BININT1 BINGET BINPUT
        rb"[Jj]....",  # BININT LONG_BINGET
        b"r" + _below(bits),  # LONG_BINPUT
        rb"M..",  # BININT2
        rb"[G\x95].{8}",  # BINFLOAT FRAME
        rb"c[^\n]{1,200}\n[^\n]{1,200}\n",  # GLOBAL
        rb"[\x8cC\x8a]" + short + rb"|[\x8cC\x8a]\x00",  # SHORT_BINUNICODE SHORT_BINBYTES LONG1
    ]
    if wide:  # BINUNICODE BINBYTES, BYTEARRAY8 (protocol 5 arrays)
        long, huge = _sized(4, range(_WIDE_BELOW)), _sized(8, range(_WIDE_BELOW))
        with_argument += [rb"[XB]" + long, rb"\x96" + huge]
        # one proposals entry, "key": array, as one unit (a shortcut of the alternatives above, as numpy_run):
        # protocol 5 _frombuffer(bytearray, dtype, shape, order); 3-4 numpy_run, bytes, state, BUILD;
        # 2 the same with the bytes as _codecs.encode(text, "latin1")
        with_argument.insert(0, b"(?:\\x8c" + short + b"|X" + long + b")" + put + b"(?:" + (
            rb"h.\(\x96" + huge + put + rb"h.(?:K.|M..|J....)+[\x85\x86\x87]" + put + rb"h.t" + put + b"R" + put
        ) + b"|" + numpy_run + b"(?:C" + short + b"|B" + long + b"|h.X" + long + put + rb"h.\x86" + put + b"R)"
            + put + b"t" + put + b"b)")
    one_byte = _ONE_BYTE[:-1] + b"Q]" if persistent else _ONE_BYTE
    return re.compile(b"(?:" + one_byte + b"*+(?:" + b"|".join(with_argument) + b"))*+" + one_byte + b"*+", re.DOTALL)


def scan(data: bytes, *, persistent: bool = False) -> int:
    """Read every opcode of ``data`` up to STOP (see the module docstring); return the longest literal."""
    size = len(data)
    if size < 3 or data[0] != 0x80 or data[1] < 2:
        raise Unsupported("protocol 0 or 1")
    match = _opcodes(min(32, max(16, (size // 4).bit_length())), size >= _WIDE_FROM, persistent).match
    pos, longest = 0, 255
    while True:
        pos = match(data, pos).end()
        op = data[pos] if pos < size else None
        if op == 0x2E:  # STOP
            return longest
        width = _COUNTED.get(op)  # type: ignore[arg-type]
        if width is None:
            raise Unsupported(f"opcode {bytes([op]) if op is not None else 'end'!r} at byte {pos}")
        start = pos + 1 + width
        count = int.from_bytes(data[pos + 1 : start], "little")
        pos = start + count
        if pos > size:
            raise Unsupported("a length field claims more than the file holds")
        if count == 1 and data[start] == _SWAPPED and op != 0x8B:
            raise Unsupported("a non-native byte order")
        longest = max(longest, count)


# -- the guards -------------------------------------------------------------------------------------------
_BUFFERS = (bytes, bytearray)
_ORDERS = ("C", "F")
_CODES = (b"b", "b")
_LATIN1 = ("latin1", "latin-1")


@functools.lru_cache(maxsize=1)
def _numeric_dtypes() -> dict[str, np.dtype]:
    """The spec numpy pickles each builtin numeric dtype with -> its singleton (``__setstate__`` no-op)."""
    out = {}
    for char in "?" + np.typecodes["AllInteger"] + np.typecodes["AllFloat"]:
        dtype = np.dtype(char)
        spec = dtype.__reduce__()[1][0]
        if np.dtype(spec) is dtype and not dtype.hasobject and dtype.fields is None:
            out[spec] = dtype
    return out


def _guards(file_size: int, longest_literal: int) -> dict[tuple[str, str], Any]:
    """What ``find_class`` hands out for one load: functions that check their arguments and a budget.

    Fresh per load, so a BUILD that sets attributes on one (it can) leaves nothing behind. Each array may
    hold a copy numpy makes in ``__setstate__`` (its bytes when <= 1000, or a str it encodes), charged here.
    """
    left = ALLOC_FACTOR * file_size + SLACK_BYTES
    per_array = 256 + max(1000, longest_literal)
    dtypes = _numeric_dtypes()
    singletons = {id(d) for d in dtypes.values()}
    new_array = multiarray._reconstruct

    def charge(nbytes: int) -> None:
        nonlocal left
        left -= nbytes
        if left < 0:
            raise Unsupported("allocation budget")

    def ndarray(*_: Any) -> Any:  # stands for numpy.ndarray inside _reconstruct's arguments only
        raise Unsupported("numpy.ndarray called")

    def reconstruct(cls: Any, shape: Any, code: Any) -> np.ndarray:  # once per array (protocols 2-4): lean
        nonlocal left
        if cls is not ndarray or type(shape) is not tuple or shape != (0,) or code not in _CODES:
            raise Unsupported("numpy _reconstruct arguments")
        left -= per_array
        if left < 0:
            raise Unsupported("allocation budget")
        return new_array(np.ndarray, (0,), b"b")

    def dtype(spec: Any, align: Any = False, copy: Any = False) -> np.dtype:
        found = dtypes.get(spec) if type(spec) is str else None
        if found is None or type(align) is not bool or type(copy) is not bool:
            raise Unsupported("numpy dtype arguments")
        return found

    def frombuffer(buf: Any, dtype: Any, shape: Any, order: Any) -> np.ndarray:
        # once per array (protocol 5): lean. reshape refuses a shape that does not fit the
        # buffer (or holds a non-integer), and a 1-D view reshaped in C or F order is a view: no copy.
        nonlocal left
        left -= per_array
        if left < 0:
            raise Unsupported("allocation budget")
        if type(buf) not in _BUFFERS or id(dtype) not in singletons or type(shape) is not tuple:
            raise Unsupported("numpy _frombuffer arguments")
        if type(order) is not str or order not in _ORDERS or len(shape) > 32:
            raise Unsupported("numpy _frombuffer order or shape")
        return np.frombuffer(buf, dtype).reshape(shape, order=order)

    def scalar(dtype: Any, data: Any) -> np.generic:
        if id(dtype) not in singletons or type(data) is not bytes or len(data) != dtype.itemsize:
            raise Unsupported("numpy scalar arguments")
        return multiarray.scalar(dtype, data)

    def encode(text: Any, encoding: Any, errors: Any = "strict") -> bytes:  # once per array (protocol 2): lean
        nonlocal left
        if type(text) is not str or encoding not in _LATIN1 or errors != "strict":
            raise Unsupported("_codecs.encode arguments")
        left -= len(text)
        if left < 0:
            raise Unsupported("allocation budget")
        return text.encode("latin-1")

    def copying(kind: type, argument: type | None, per_item: int = 0) -> Any:
        """``kind()``, or ``kind(argument)``, charged ``per_item`` bytes per item it copies."""

        def build(*args: Any) -> Any:
            if args and (len(args) > 1 or argument is None or type(args[0]) is not argument):
                raise Unsupported(f"{kind.__name__} arguments")
            charge(64 + per_item * len(args[0]) if args else 64)
            return kind(*args)

        return build

    def complex_(real: Any, imag: Any) -> complex:
        if type(real) not in (int, float) or type(imag) not in (int, float):
            raise Unsupported("complex arguments")
        return complex(real, imag)

    return {
        ("builtins", "bytes"): copying(bytes, None),  # protocol 2 writes b"" as bytes()
        ("builtins", "bytearray"): copying(bytearray, bytes, 1),
        ("builtins", "set"): copying(set, list, 40),  # a hash table: ~40 bytes per element
        ("builtins", "frozenset"): copying(frozenset, list, 40),
        ("builtins", "complex"): complex_,
        ("collections", "OrderedDict"): copying(collections.OrderedDict, None),
        ("_codecs", "encode"): encode,
        ("numpy", "ndarray"): ndarray,
        ("numpy", "dtype"): dtype,
        ("numpy._core.multiarray", "_reconstruct"): reconstruct,
        ("numpy._core.multiarray", "scalar"): scalar,
        ("numpy._core.numeric", "_frombuffer"): frombuffer,
    }


class _Unpickler(pickle.Unpickler):
    """The C unpickler; globals resolve only to the guards of this load."""

    def __init__(self, data: bytes, guards: dict[tuple[str, str], Any], persistent_load: Any) -> None:
        # a reader with peek(): the C unpickler then takes the input in chunks, not one read() per opcode
        super().__init__(io.BufferedReader(io.BytesIO(data), 1 << 16))
        self._guards = guards
        if persistent_load is not None:
            self.persistent_load = persistent_load

    def find_class(self, module: str, name: str) -> Any:  # noqa: D102 (pickle hook)
        module = {"__builtin__": "builtins"}.get(module, module)
        if module == "numpy.core" or module.startswith("numpy.core."):
            module = "numpy._core" + module[len("numpy.core") :]  # numpy 1.x names
        found = self._guards.get((module, name))
        if found is None:
            raise Unsupported(f"global {module}.{name}")
        return found


# -- after the load ---------------------------------------------------------------------------------------
_LEAVES = frozenset(
    {str, bytes, bytearray, int, float, complex, bool, type(None), np.ndarray}
    | {type(np.dtype(c).type(0)) for c in "?" + np.typecodes["AllInteger"] + np.typecodes["AllFloat"]}
    | {type(d) for d in (np.dtype(c) for c in "?" + np.typecodes["AllInteger"] + np.typecodes["AllFloat"])}
)
_SEQUENCES = frozenset({list, tuple, set, frozenset})


def _children(obj: Any) -> tuple[Any, ...]:
    """The parts of a container to walk (an OrderedDict's attributes too); anything unknown leaves the profile."""
    kind = type(obj)
    if kind is dict:
        return obj.keys(), obj.values()
    if kind in _SEQUENCES:
        return (obj,)
    if kind is collections.OrderedDict:
        return obj.keys(), obj.values(), vars(obj).values()
    raise Unsupported(f"a {kind.__name__} in the result")


def check_nesting(root: Any, leaves: frozenset[type] = _LEAVES) -> None:
    """Containers nest at most MAX_DEPTH deep (a cycle never ends), walked without recursion.

    A container shared by several parents is walked once: its depth is remembered by id. One whose
    children are all leaves is judged by ``set(map(type, ...))``, without a Python loop over 200k items.
    """

    def _flat(parts: tuple[Any, ...]) -> bool:
        return all(set(map(type, part)) <= leaves for part in parts)

    if type(root) in leaves or _flat(_children(root)):
        return
    known: dict[int, int] = {}
    path = [[root, itertools.chain.from_iterable(_children(root)), 0]]
    while path:
        frame = path[-1]
        for child in frame[1]:
            if type(child) in leaves:
                continue
            depth = known.get(id(child))
            if depth is None:
                parts = _children(child)
                if not _flat(parts):
                    if len(path) >= MAX_DEPTH:
                        raise Unsupported("nesting")
                    path.append([child, itertools.chain.from_iterable(parts), 0])
                    break
                depth = known[id(child)] = 1
            frame[2] = max(frame[2], depth)
        else:
            path.pop()
            known[id(frame[0])] = depth = frame[2] + 1
            if path:
                path[-1][2] = max(path[-1][2], depth)


@contextlib.contextmanager
def collector_paused() -> Iterator[None]:
    """No cyclic garbage collection while ~200k objects are built: it would walk them again and again."""
    collecting = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if collecting:
            gc.enable()


def load(
    data: bytes,
    *,
    extra_globals: dict[tuple[str, str], Any] | None = None,
    persistent_load: Callable[[Any], Any] | None = None,
    extra_leaves: tuple[type, ...] = (),
) -> Any:
    """Unpickle ``data`` through the fast profile, or raise :class:`Unsupported` (nothing else).

    ``extra_globals`` (torch's rebuild functions and storage types, for bank imports) must be safe
    under any arguments and under BUILD (no ``__dict__``, no writable attributes): the C unpickler
    calls and sets state on whatever is on its stack. ``persistent_load`` resolves BINPERSID ids;
    ``extra_leaves`` are the types it and the extra globals return.
    """
    guards = _guards(len(data), scan(data, persistent=persistent_load is not None))
    guards.update(extra_globals or {})
    with collector_paused():
        try:
            result = _Unpickler(data, guards, persistent_load).load()
            check_nesting(result, _LEAVES | frozenset(extra_leaves))
            return result
        except Unsupported:
            raise
        except Exception as exc:  # noqa: BLE001 - any failure: the bounded unpickler gives the verdict
            raise Unsupported(f"{type(exc).__name__}: {exc}") from exc
