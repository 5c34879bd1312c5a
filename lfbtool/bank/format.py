"""The on-disk layout of a feature bank (docs/bank-format.md): names, version, and the one structural check.

Every tool that opens a bank (reader, verify, merge, inspect, the extract run) goes through
:func:`open_bank` and :func:`read_checked_index`, so a file one of them refuses is refused by all of
them: attributes, dataset presence, storage (no external files, links or virtual datasets), types,
shapes, offsets, order, and the index checksums of version-2 banks.
"""

from __future__ import annotations

import errno
import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from lfbtool._io.atomic import io_error_text
from lfbtool.errors import LfbError
from lfbtool.keys import key_text

FORMAT_NAME = "lfbtool-bank"
#: Version 2 adds checksums (fletcher32 on row datasets, sha256 attributes on index datasets).
FORMAT_VERSION = 2
FEATURE_CHUNK_ROWS = 128
BOX_CHUNK_ROWS = 4096
SCORE_CHUNK_ROWS = 16384
#: Index datasets carry the sha256 of their bytes (see :func:`index_digest`) in this attribute.
DIGEST_ATTR = "sha256"

VIDEOS = "videos"
VIDEO_KEY_OFFSETS = "video_key_offsets"
TIMESTAMPS = "timestamps"
KEY_ROW_OFFSETS = "key_row_offsets"
FEATURES = "features"
BOXES = "boxes"
SCORES = "scores"
INDEX_DATASETS = (VIDEOS, VIDEO_KEY_OFFSETS, TIMESTAMPS, KEY_ROW_OFFSETS)
ROW_DATASETS = (FEATURES, BOXES, SCORES)
DTYPES = ("float16", "float32")

ATTRS = (
    "format",
    "format_version",
    "feature_dim",
    "dtype",
    "mode",
    "config",
    "config_fingerprint",
    "checkpoint_sha256",
    "created_by",
)

Key = tuple[str, int]
#: Open failures that are the machine's, not the file's: a runtime error (exit 1), never "corrupt".
_RESOURCE_ERRNOS = (errno.EMFILE, errno.ENFILE, errno.ENOMEM)


def as_text(value: object) -> str:
    """h5py hands back strings as bytes or str depending on how they were stored."""
    return value.decode() if isinstance(value, bytes) else str(value)


def _attr(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, np.generic):
        return value.item()
    return value


def bank_path(out_dir: Path, mode: str) -> Path:
    return Path(out_dir) / f"lfb_{mode}.h5"


def index_digest(values: np.ndarray | list[str]) -> str:
    """sha256 of an index dataset's content: int64 little-endian numbers, or NUL-joined UTF-8 names."""
    if isinstance(values, list) or (isinstance(values, np.ndarray) and values.dtype.kind in "OSU"):
        data = "\0".join(as_text(v) for v in values).encode()
    else:
        data = np.asarray(values, dtype="<i8").tobytes()
    return hashlib.sha256(data).hexdigest()


def check_bank_file(f: h5py.File, path: Path | str) -> None:
    """Refuse a file that is not a bank, or a bank newer than this reader understands."""
    fmt = as_text(f.attrs.get("format"))
    if fmt != FORMAT_NAME:
        raise LfbError(f"{path}: not an lfbtool bank (attribute format={fmt!r}, expected {FORMAT_NAME!r})")
    version = int(f.attrs.get("format_version", -1))
    if version > FORMAT_VERSION:
        raise LfbError(
            f"{path}: bank format_version {version} is newer than this lfbtool reads "
            f"({FORMAT_VERSION}); upgrade lfbtool"
        )
    if version < 1:
        raise LfbError(f"{path}: bank has invalid format_version {version}")


def open_bank(path: Path | str, label: str | None = None, *, chunk_cache_bytes: int | None = None) -> h5py.File:
    """Open a file read-only; a missing or non-HDF5 file is an LfbError naming ``label``.

    Only the file is opened here: :func:`read_checked_index` says whether it is a sound bank.
    """
    what = label or str(path)
    if not Path(path).is_file():
        if Path(path).is_dir():
            raise LfbError(f"{what}: is a directory, not a bank file")
        raise LfbError(f"{what}: no such bank file" if not Path(path).exists() else f"{what}: not a regular file")
    try:
        return h5py.File(path, "r", rdcc_nbytes=chunk_cache_bytes)
    except OSError as error:
        if error.errno:  # the OS refused to open it (too many open files, permission): the file is not at fault
            code = 1 if error.errno in _RESOURCE_ERRNOS else 2
            raise LfbError(f"{what}: cannot open the bank ({io_error_text(error)})", exit_code=code) from None
        raise LfbError(f"{what}: not an lfbtool bank: not readable as HDF5, truncated or corrupt ({error})") from None


@dataclass(frozen=True)
class BankIndex:
    """A bank's attributes and its small in-memory index, checked by :func:`read_checked_index`."""

    label: str
    attrs: dict[str, Any]
    videos: list[str]
    video_key_offsets: np.ndarray  # [V + 1] int64
    timestamps: np.ndarray  # [K] int64
    key_row_offsets: np.ndarray  # [K + 1] int64
    checksummed: bool

    @property
    def feature_dim(self) -> int:
        return int(self.attrs["feature_dim"])

    @property
    def dtype(self) -> str:
        return str(self.attrs["dtype"])

    @property
    def mode(self) -> str:
        return str(self.attrs["mode"])

    @property
    def num_keys(self) -> int:
        return len(self.timestamps)

    @property
    def num_rows(self) -> int:
        return int(self.key_row_offsets[-1])

    @property
    def first_key(self) -> Key | None:
        return (self.videos[0], int(self.timestamps[0])) if self.num_keys else None

    @property
    def last_key(self) -> Key | None:
        return (self.videos[-1], int(self.timestamps[-1])) if self.num_keys else None

    def keys(self) -> list[Key]:
        vko = self.video_key_offsets
        return [(video, int(t)) for v, video in enumerate(self.videos) for t in self.timestamps[vko[v] : vko[v + 1]]]

    def key_of_row(self, row: int) -> str:
        k = int(np.searchsorted(self.key_row_offsets, row, side="right")) - 1
        v = int(np.searchsorted(self.video_key_offsets, k, side="right")) - 1
        return key_text(self.videos[v], int(self.timestamps[k]))


def dataset(handle: h5py.File, name: str, what: str, ndim: int, kinds: str) -> h5py.Dataset:
    """``/name`` as a plain dataset stored in this file, of rank ``ndim`` and dtype kind in ``kinds``.

    External links, soft links, external raw storage and virtual datasets are refused: they make a
    reader return bytes from some other file.
    """
    link = handle.get(name, getlink=True)
    if link is None:
        raise LfbError(f"{what}: dataset /{name} is missing")
    if not isinstance(link, h5py.HardLink):
        raise LfbError(f"{what}: /{name} is a {type(link).__name__} to another place; a bank holds its own data")
    data = handle[name]
    if not isinstance(data, h5py.Dataset):
        raise LfbError(f"{what}: /{name} is not a dataset")
    if data.external:
        raise LfbError(f"{what}: /{name} is stored in external file(s) {data.external[0][0]!r}; refused")
    if data.is_virtual:
        raise LfbError(f"{what}: /{name} is a virtual dataset mapping other files; refused")
    if data.ndim != ndim:
        raise LfbError(f"{what}: /{name} has {data.ndim} dimensions, expected {ndim}")
    kind = "S" if h5py.check_string_dtype(data.dtype) is not None else data.dtype.kind
    if kind not in kinds:
        expected = "strings" if kinds == "S" else "integers" if kinds == "iu" else "floats"
        raise LfbError(f"{what}: /{name} has dtype {data.dtype}, expected {expected}")
    return data


def _read_all(data: h5py.Dataset, what: str) -> np.ndarray:
    try:
        return data[()]
    except (OSError, RuntimeError, UnicodeDecodeError) as error:
        raise LfbError(f"{what}: /{data.name.lstrip('/')} unreadable, truncated or corrupt ({error})") from None


def read_checked_index(handle: h5py.File, what: str) -> BankIndex:
    """Check everything but the row values (verify adds those) and return the index.

    Cost O(videos + keys): attributes, datasets (storage, rank, dtype), row counts, both offset
    arrays (count, start, monotonic, end), video order, timestamp order, and for version 2 the
    checksum filters and index digests. The first problem is one LfbError naming the dataset or key.
    """
    check_bank_file(handle, what)
    raw = handle.attrs
    for name in ATTRS:
        if name not in raw:
            raise LfbError(f"{what}: attribute {name!r} is missing")
    attrs = {name: _attr(raw[name]) for name in ATTRS}
    for name in ("format_version", "feature_dim"):
        if isinstance(attrs[name], bool) or not isinstance(attrs[name], int):
            raise LfbError(f"{what}: attribute {name} is {attrs[name]!r}, not an integer")
    dim, dtype, version = attrs["feature_dim"], attrs["dtype"], attrs["format_version"]
    if dim < 1:
        raise LfbError(f"{what}: feature_dim {dim} is not positive")
    if dtype not in DTYPES:
        raise LfbError(f"{what}: dtype attribute {dtype!r} is neither float16 nor float32")

    videos_ds = dataset(handle, VIDEOS, what, 1, "S")
    vko_ds, ts_ds, kro_ds = (dataset(handle, n, what, 1, "iu") for n in INDEX_DATASETS[1:])
    features = dataset(handle, FEATURES, what, 2, "f")
    boxes = dataset(handle, BOXES, what, 2, "f")
    scores = dataset(handle, SCORES, what, 1, "f")
    if features.shape[1] != dim:
        raise LfbError(f"{what}: /features has {features.shape[1]} columns, feature_dim says {dim}")
    if features.dtype != np.dtype(dtype):
        raise LfbError(f"{what}: /features is {features.dtype}, the dtype attribute says {dtype}")
    if boxes.shape[1] != 4:
        raise LfbError(f"{what}: /boxes has {boxes.shape[1]} columns, expected 4")
    n = features.shape[0]
    if boxes.shape[0] != n or scores.shape[0] != n:
        raise LfbError(f"{what}: row counts differ: /features {n}, /boxes {boxes.shape[0]}, /scores {scores.shape[0]}")

    videos = [as_text(v) for v in _read_all(videos_ds, what)]
    vko, ts, kro = (np.asarray(_read_all(d, what), dtype=np.int64) for d in (vko_ds, ts_ds, kro_ds))
    if version >= 2:
        for data in (features, boxes, scores):
            if not data.fletcher32:
                raise LfbError(f"{what}: /{data.name.lstrip('/')} has no fletcher32 checksum (format_version 2 needs it)")
    k = len(ts)
    _check_offsets(what, VIDEO_KEY_OFFSETS, vko, len(videos), "/videos", k, "/timestamps", strict=True)
    _check_offsets(what, KEY_ROW_OFFSETS, kro, k, "/timestamps", n, "/features", strict=False)
    for v in range(1, len(videos)):
        if videos[v] <= videos[v - 1]:
            word = "twice" if videos[v] == videos[v - 1] else "out of order"
            raise LfbError(f"{what}: /videos: {videos[v]!r} (entry {v}) is {word} after {videos[v - 1]!r}; "
                           "must be sorted, unique")
    for v, video in enumerate(videos):
        span = ts[vko[v] : vko[v + 1]]
        bad = np.flatnonzero(np.diff(span) <= 0)
        if len(bad):
            i = int(bad[0])
            raise LfbError(f"{what}: key {key_text(video, int(span[i + 1]))} follows {key_text(video, int(span[i]))}; "
                           "timestamps must strictly increase within a video")
    if version >= 2:  # after the structural checks, so a damaged index is named precisely where it can be
        for data, values in ((videos_ds, videos), (vko_ds, vko), (ts_ds, ts), (kro_ds, kro)):
            if as_text(data.attrs.get(DIGEST_ATTR, "")) != index_digest(values):
                raise LfbError(f"{what}: /{data.name.lstrip('/')} does not match its sha256 checksum; damaged index")
    return BankIndex(what, attrs, videos, vko, ts, kro, checksummed=version >= 2)


def _check_offsets(what: str, name: str, off: np.ndarray, count: int, of: str, total: int, into: str,
                   *, strict: bool) -> None:
    """``off`` must have count+1 entries from 0 to ``total``, increasing (strictly when ``strict``)."""
    if len(off) != count + 1:
        raise LfbError(f"{what}: /{name} has {len(off)} entries, expected {count + 1} ({of} has {count})")
    if off[0] != 0:
        raise LfbError(f"{what}: /{name} starts at {int(off[0])}, expected 0")
    steps = np.diff(off)
    bad = np.flatnonzero(steps <= 0 if strict else steps < 0)
    if len(bad):
        i = int(bad[0])
        rule = "strictly increase" if strict else "never decrease"
        raise LfbError(f"{what}: /{name}[{i + 1}] = {int(off[i + 1])} after {int(off[i])}; offsets must {rule}")
    if off[-1] != total:
        raise LfbError(f"{what}: /{name} ends at {int(off[-1])} but {into} has {total} entries")


def read_header(path: Path | str, label: str | None = None) -> BankIndex:
    """Open, check and close: the attributes and index of the bank at ``path``."""
    what = label or str(path)
    with open_bank(path, what, chunk_cache_bytes=0) as handle:
        return read_checked_index(handle, what)


def read_rows(data: h5py.Dataset, start: int, stop: int, what: str) -> np.ndarray:
    """Rows ``start:stop`` of a row dataset; a failed checksum or a truncated chunk is one LfbError."""
    try:
        return data[start:stop]
    except (OSError, RuntimeError) as error:
        name = data.name.lstrip("/")
        raise LfbError(f"{what}: /{name} rows {start}-{stop} unreadable: damaged chunk, checksum mismatch or "
                       f"truncated file ({str(error).splitlines()[0] if str(error) else type(error).__name__})") from None


def all_finite(values: np.ndarray) -> bool:
    """True when no value is NaN or Inf; float16 is judged by its exponent bits (all ones: not finite),
    ten times faster than ``np.isfinite``, so every read of feature rows can afford the check."""
    if values.dtype == np.float16:
        return values.size == 0 or int((values.view(np.uint16) & 0x7C00).max()) < 0x7C00
    return bool(np.isfinite(values).all())


def refuse_non_finite(features: np.ndarray, start: int, index: BankIndex) -> None:
    """Rows of /features read from row ``start``: NaN or Inf is one LfbError naming the file, key and
    row. verify, merge, export and every FeatureBank read refuse such a row alike."""
    if all_finite(features):
        return
    row = start + int(np.argmin(np.isfinite(features).all(axis=1)))
    raise LfbError(f"{index.label}: key {index.key_of_row(row)}: /features row {row} holds NaN or Inf")
