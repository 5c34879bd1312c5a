"""A decoder for the one common proposals layout: ``dict[str, float32 [n, 4|5]]`` as ``pickle.dump`` writes
it at protocol 4 (Python 3's default). It reads the bytes with regular expressions and never unpickles:
nothing can run, nothing is allocated beyond the file's own data, and the boxes land in one buffer that
every key's array views. Anything that is not exactly this layout returns None, and the generic path
(``load_plain``, ``proposals_at_once``, the key-by-key loop) gives the verdict and the message.

The layout: ``PROTO 4``, FRAMEs, ``EMPTY_DICT MEMOIZE MARK``, a first entry that defines numpy's globals and
the float32 dtype (memo 4, 7, 9, 17), then entries that refer to them, ``SETITEMS MARK`` every 1000
entries, ``SETITEMS [MARK SETITEMS] STOP``. A FRAME is a no-op for the C unpickler wherever it sits
between two opcodes; its headers are cut out here, and each cut must fall between two opcodes of the
parse (a cut inside an opcode would make the C unpickler read other bytes than this decoder).
"""

from __future__ import annotations

import functools
import re
import sys
from collections.abc import Iterator

import numpy as np

from lfbtool._io.pickle_fast import _sized
from lfbtool.data._proposals_fast import Key, boxes_outside
from lfbtool.keys import video_id_problem

__all__ = ["MAX_ROWS", "decode"]

#: Most boxes per key the decoder reads (one regex alternative per length); more: the generic path.
MAX_ROWS = 1000
_FRAME = 0x95
#: pickle ends a FRAME at the first opcode boundary after 64 KiB; smaller ones (but the last) are not its
#: writing, and each cut costs a Python loop over an entry's opcodes: refused, so that costs stay linear
_MIN_FRAME = 1 << 15
_VALUE = rb"\x94h\x04h\x07K\x00\x85\x94h\t\x87\x94R\x94\(K\x01"  # the 2nd entry on: _reconstruct(ndarray, (0,), b"b")
_MODULES = rb"(?:\x8c\x16numpy\._core\.multiarray|\x8c\x15numpy\.core\.multiarray)"
_FIRST_VALUE = (
    rb"\x94" + _MODULES + rb"\x94\x8c\x0c_reconstruct\x94\x93\x94\x8c\x05numpy\x94\x8c\x07ndarray\x94\x93\x94"
    rb"K\x00\x85\x94C\x01b\x94\x87\x94R\x94\(K\x01"
)
_DTYPE = rb"\x86\x94h\x05\x8c\x05dtype\x94\x93\x94\x8c\x02f4\x94\x89\x88\x87\x94R\x94\(K\x03\x8c\x01<\x94NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00t\x94b\x89"
_KEY = rb"\x8c(.)([^,\x8c]{1,255}+,[0-9]{1,9}+)"  # "video_id,timestamp" (plain digits: int() of them is the number)
_DIM = rb"(K.|M..)"  # at most MAX_ROWS rows
_END = rb"\x94t\x94b"
# opcode -> (fixed argument bytes, length-field bytes): the opcodes of this layout, for the FRAME cuts
_ARGS = {ord(c): (0, 0) for c in "}\x94(\x93\x85\x86\x87R\x89\x88tbNu.s"}
_ARGS.update({ord("K"): (1, 0), ord("h"): (1, 0), ord("M"): (2, 0), ord("J"): (4, 0), 0x8C: (0, 1), ord("C"): (0, 1)})
_ARGS.update({ord("B"): (0, 4)})


@functools.lru_cache(maxsize=2)
def _patterns(cols: int) -> tuple[re.Pattern[bytes], re.Pattern[bytes]]:
    """The first entry and the other entries (``cols`` columns).

    In the others, the first dimension (BININT1 or BININT2, captured by a lookahead) and the length of the
    data (SHORT_BINBYTES up to 255 bytes, else BINBYTES) are matched together, one alternative per number
    of rows: the data's length is the shape's by construction, and the engine skips the data in one jump.
    """
    row = 4 * cols
    short = b"(?:\\x00|" + _sized(1, range(row, 256, row)) + b")"
    long = _sized(4, range((255 // row + 1) * row, MAX_ROWS * row + 1, row))
    col = re.escape(bytes([cols]))
    first = re.compile(
        rb"}\x94\(" + _KEY + _FIRST_VALUE + _DIM + b"K" + col + _DTYPE + rb"(C" + short + b"|B" + long + b")" + _END,
        re.DOTALL,
    )

    def rows(count: int) -> bytes:
        size = count * row
        length = b"C" + bytes([size]) if size <= 255 else b"B" + size.to_bytes(4, "little")
        dim = count.to_bytes(1 if count < 256 else 2, "little")
        return re.escape(dim + b"K" + bytes([cols]) + b"\x86\x94h\x11\x89" + length) + b".{%d}" % size

    data = b"(?=" + _DIM + b")(?:K(?:" + b"|".join(map(rows, range(256))) + b")|M(?:"
    data += b"|".join(map(rows, range(256, MAX_ROWS + 1))) + b"))"
    return first, re.compile(rb"(u\()?" + _KEY + _VALUE + data + _END, re.DOTALL)


_BEFORE_DIM = 2 + len(b"\x94h\x04h\x07K\x00\x85\x94h\t\x87\x94R\x94(K\x01")  # \x8c n, then after the key
_BEFORE_DATA = 1 + len(b"\x05\x86\x94h\x11\x89")  # after the first dimension, then the length field


def _unframed(raw: bytes) -> tuple[bytes, list[int]] | None:
    """The opcodes after ``PROTO 4`` without FRAME headers, and where each cut lies in them."""
    if raw[:2] != b"\x80\x04":
        return None
    parts, cuts, pos, size, length = [], [], 2, len(raw), 0
    view = memoryview(raw)
    while pos < size and raw[pos] == _FRAME:
        count = int.from_bytes(raw[pos + 1 : pos + 9], "little")
        start = pos + 9
        if start > size or count > size - start:  # the C unpickler: "pickle data was truncated"
            return None
        if count < _MIN_FRAME and start + count < size:
            return None
        parts.append(view[start : start + count])
        length += count
        cuts.append(length)
        pos = start + count
    parts.append(view[pos:])
    return b"".join(parts), cuts[:-1] if pos == size else cuts


def _between_opcodes(stream: bytes, start: int, cut: int) -> bool:
    """Whether ``cut`` falls between two opcodes, reading them from ``start`` (an opcode's first byte)."""
    pos = start
    while pos < cut:
        args = _ARGS.get(stream[pos])
        if args is None:
            return False
        fixed, field = args
        count = int.from_bytes(stream[pos + 1 + fixed : pos + 1 + fixed + field], "little")
        pos += 1 + fixed + field + count
    return pos == cut


def _numbers(fields: list[bytes], sizes: np.ndarray) -> np.ndarray:
    """The arguments of BININT1 / BININT2 / SHORT_BINBYTES' length / BINBYTES' length (``sizes``: the
    opcode and its 1, 2 or 4 bytes, little-endian, unsigned) -> int64, all at once."""
    raw = np.frombuffer(b"".join(fields) + bytes(4), np.uint8).astype(np.int64)
    at = np.cumsum(sizes) - sizes + 1  # the argument's first byte
    value = raw[at]
    for i in (1, 2, 3):
        value += np.where(sizes > i + 1, raw[at + i] << (8 * i), 0)
    return value


def decode(raw: bytes) -> dict[Key, np.ndarray] | None:
    """``raw`` (a whole file) -> the checked proposals, or None when it is not exactly the layout or a
    check fails (the generic path then decides, naming the key)."""
    if sys.byteorder != "little":  # the layout's "<f4" is not the native float32 there
        return None
    unframed = _unframed(raw)
    if unframed is None:
        return None
    stream, cuts = unframed
    for trailer in (b"u(u.", b"u."):
        if stream.endswith(b"\x94t\x94b" + trailer):
            end = len(stream) - len(trailer)
            break
    else:
        return None
    cols = 5 if stream.find(b"K\x05\x86\x94h\x05\x8c\x05dtype", 0, 400) >= 0 else 4
    first_pattern, pattern = _patterns(cols)
    first = first_pattern.match(stream, 0, end)
    if first is None or ord(first[1]) != len(first[2]):
        return None
    found = pattern.findall(stream, first.end(), end)
    if not found:
        return None
    marks, lengths, keys, dims = zip(*found, strict=True)
    count = len(found)

    def sizes(column: tuple[bytes, ...]) -> np.ndarray:
        return np.fromiter(map(len, column), np.int64, count)

    key_sizes, dim_sizes = sizes(keys), sizes(dims)
    if (np.frombuffer(b"".join(lengths), np.uint8) != key_sizes).any():
        return None  # SHORT_BINUNICODE's length is not the key's
    # MARK SETITEMS after every 1000th entry, as pickle batches them, and nowhere else
    batched = marks[999::1000]
    if count - marks.count(b"") != len(batched) or b"" in batched:
        return None
    row = 4 * cols
    data_sizes = _numbers(dims, dim_sizes) * row
    field_sizes = np.where(data_sizes <= 255, 2, 5)
    data_at = _BEFORE_DIM + key_sizes + dim_sizes + _BEFORE_DATA + field_sizes  # within the entry
    data_at[999::1000] += 2
    entry = data_at + data_sizes + 4
    if int(entry.sum()) != end - first.end():
        return None  # something between the entries is not one
    entry_at = np.cumsum(entry) - entry + first.end()
    if not _cuts_between_opcodes(stream, cuts, entry_at):
        return None
    first_data = first[4][2:] if first[4][:1] == b"C" else first[4][5:]
    rows = np.concatenate([[len(first_data) // row], data_sizes // row])
    if rows[0] * row != len(first_data) or rows[0] != _numbers([first[3]], np.array([len(first[3])]))[0]:
        return None  # a shape that is not the data's
    data_at += entry_at
    view = memoryview(stream)
    data_ends = (data_at + data_sizes).tolist()
    datas = [first_data, *[view[start:end] for start, end in zip(data_at.tolist(), data_ends, strict=True)]]
    joined = bytearray().join(datas)  # writeable, as the arrays pickle.load gives
    boxes = np.frombuffer(joined, np.float32).reshape(-1, cols)
    outside = boxes_outside(boxes)
    if outside is None:
        return None
    ends = np.cumsum(rows)
    for i in np.unique(np.searchsorted(ends, outside, side="right")).tolist():  # as proposals_at_once: the arrays
        part = boxes[ends[i] - rows[i] : ends[i], :4]  # with a corner within BOX_TOLERANCE outside [0, 1]
        np.clip(part, 0, 1, out=part)
    parsed = _keys([first[2], *keys])
    if parsed is None:
        return None
    ends = ends.tolist()
    arrays = [boxes[start:end] for start, end in zip([0, *ends[:-1]], ends, strict=True)]  # faster than map()
    out = dict(zip(parsed, arrays, strict=True))
    return out if len(out) == count + 1 else None  # else a duplicate ("v,902" and "v,0902")


def _keys(keys: list[bytes]) -> Iterator[Key] | None:
    """``(video_id, timestamp)`` per entry as ``proposals_at_once`` builds them, or None (a video id a bank
    cannot name, a key that does not decode). The key is decoded as the C unpickler does (UTF-8 with
    surrogatepass); the regex let through one comma and 1-9 ASCII digits after it: ``int()`` of those is
    their decimal value, always within a bank's int32 timestamps."""
    try:
        text = b"\n".join(keys).decode("utf-8", "surrogatepass")
    except UnicodeDecodeError:
        return None
    parts = text.replace(",", "\n").split("\n")
    if len(parts) != 2 * len(keys):  # a video id with a newline
        return None
    ids = parts[0::2]
    if any(video_id_problem(v) for v in set(ids)):
        return None
    stamps = parts[1::2]
    values = {text: int(text) for text in set(stamps)}  # a few thousand distinct: one int() each
    return zip(ids, map(values.__getitem__, stamps), strict=True)


def _cuts_between_opcodes(stream: bytes, cuts: list[int], starts: np.ndarray) -> bool:
    """Each FRAME cut falls between two opcodes of the parse: read from the entry that holds it."""
    if not cuts:
        return True
    holders = np.searchsorted(starts, cuts, side="right") - 1
    for cut, holder in zip(cuts, holders.tolist(), strict=True):
        start = 0 if holder < 0 else int(starts[holder])
        if cut >= len(stream) or not _between_opcodes(stream, start, cut):
            return False
    return True
