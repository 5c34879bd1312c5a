"""BankWriter: stream keys in sorted order into an HDF5 bank that appears under its name only when complete.

Rows are buffered and written in blocks, so memory stays bounded by the block size whatever the bank
size; the small per-key index (timestamps, offsets) is kept in memory and written at the end.
"""

from __future__ import annotations

import os
from importlib import metadata
from pathlib import Path

import h5py
import numpy as np

import lfbtool
from lfbtool._io.atomic import discard, io_error_text, publish, temporary_path
from lfbtool.bank import format as fmt
from lfbtool.errors import LfbError, RunError
from lfbtool.keys import key_text, timestamp_problem

_DTYPES = {"float16": np.float16, "float32": np.float32}


def created_by() -> str:
    try:
        torch_version = metadata.version("torch")
    except metadata.PackageNotFoundError:
        torch_version = "absent"
    return f"lfbtool {lfbtool.__version__}, torch {torch_version}"


def _as_numpy(array, dtype: type) -> np.ndarray:
    """Accept numpy arrays or torch tensors without importing torch (merge runs torch-free)."""
    if hasattr(array, "detach"):
        array = array.detach().cpu().numpy()
    return np.asarray(array, dtype=dtype)


class BankWriter:
    """Write one bank file. Keys must arrive in strictly increasing (video_id, timestamp) order.

    The file is written as ``<path>.tmp-<host>-<pid>`` and renamed to ``path`` by :meth:`close`, so a
    file carrying the bank's name is always finished. Used as a context manager it closes on success and
    aborts (removes the temporary file) on an exception. ``replace=False`` (merge and import without
    ``--force``): the rename refuses, atomically, a ``path`` that another command wrote meanwhile.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        feature_dim: int,
        dtype: str = "float16",
        mode: str = "train",
        config_json: str = "{}",
        config_fingerprint: str = "",
        checkpoint_sha256: str = "",
        block_rows: int = 4096,
        replace: bool = True,
    ) -> None:
        if dtype not in _DTYPES:
            raise LfbError(f"{path}: unsupported feature dtype {dtype!r} (float16 or float32)")
        if isinstance(feature_dim, bool) or not isinstance(feature_dim, (int, np.integer)) or feature_dim < 1:
            raise LfbError(f"{path}: feature_dim {feature_dim!r} is not a positive whole number")
        self.path = Path(path)
        self.replace = replace
        self.tmp_path = temporary_path(self.path)
        self.feature_dim = int(feature_dim)
        self.dtype = dtype
        self._np_dtype = _DTYPES[dtype]
        self._block_rows = block_rows
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = h5py.File(self.tmp_path, "w", rdcc_nbytes=0)  # no chunk cache: a failed write fails here, not at exit
        except (OSError, RuntimeError) as error:
            discard(self.tmp_path)
            raise RunError(f"{self.path}: cannot write the bank here ({io_error_text(error)})") from error
        except BaseException:  # SIGINT / SIGTERM while the file is created
            discard(self.tmp_path)
            raise
        try:
            self._start(mode, config_json, config_fingerprint, checkpoint_sha256)
        except BaseException:  # a signal (or a failed write) before the writer is returned: its caller cannot abort it
            self.abort()
            raise

    def _start(self, mode: str, config_json: str, config_fingerprint: str, checkpoint_sha256: str) -> None:
        attrs = {
            "format": fmt.FORMAT_NAME,
            "format_version": fmt.FORMAT_VERSION,
            "feature_dim": self.feature_dim,
            "dtype": self.dtype,
            "mode": mode,
            "config": config_json,
            "config_fingerprint": config_fingerprint,
            "checkpoint_sha256": checkpoint_sha256,
            "created_by": created_by(),
        }
        for name, value in attrs.items():
            self._file.attrs[name] = value
        # fletcher32: HDF5 checks every chunk on read, so a flipped byte is an error, not a wrong number.
        self._features = self._file.create_dataset(
            fmt.FEATURES, shape=(0, self.feature_dim), maxshape=(None, self.feature_dim),
            dtype=self._np_dtype, chunks=(fmt.FEATURE_CHUNK_ROWS, self.feature_dim), fletcher32=True,
        )
        self._boxes = self._file.create_dataset(
            fmt.BOXES, shape=(0, 4), maxshape=(None, 4), dtype=np.float32, chunks=(fmt.BOX_CHUNK_ROWS, 4),
            fletcher32=True,
        )
        self._scores = self._file.create_dataset(
            fmt.SCORES, shape=(0,), maxshape=(None,), dtype=np.float32, chunks=(fmt.SCORE_CHUNK_ROWS,),
            fletcher32=True,
        )
        self._videos: list[str] = []
        self._video_key_offsets: list[int] = [0]
        self._timestamps: list[int] = []
        self._key_row_offsets: list[int] = [0]
        self._pending: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        self._pending_rows = 0
        self._rows_written = 0
        self._last_key: tuple[str, int] | None = None
        self._closed = False

    @property
    def num_keys(self) -> int:
        return len(self._timestamps)

    @property
    def num_rows(self) -> int:
        return self._key_row_offsets[-1]

    @property
    def last_key(self) -> tuple[str, int] | None:
        return self._last_key

    def append(
        self,
        video_id: str,
        timestamp: int,
        features,
        boxes,
        scores,
    ) -> None:
        """Add the rows of one key (n boxes, n feature vectors)."""
        key = (str(video_id), int(timestamp))
        problem = timestamp_problem(key[1])
        if problem:
            raise LfbError(f"{self.path}: key {key_text(*key)}: {problem}")
        if self._last_key is not None and key <= self._last_key:
            raise LfbError(
                f"{self.path}: key {key_text(*key)} arrives after {key_text(*self._last_key)}; "
                "keys must be written in increasing (video_id, timestamp) order, each once"
            )
        feats = _as_numpy(features, self._np_dtype)
        box = _as_numpy(boxes, np.float32).reshape(-1, 4)
        score = _as_numpy(scores, np.float32).reshape(-1)
        if feats.ndim != 2 or feats.shape[1] != self.feature_dim:
            raise LfbError(
                f"{self.path}: key {key_text(*key)} has features of shape {tuple(feats.shape)}, "
                f"expected (n, {self.feature_dim})"
            )
        if not (feats.shape[0] == box.shape[0] == score.shape[0]):
            raise LfbError(
                f"{self.path}: key {key_text(*key)} has {feats.shape[0]} features, "
                f"{box.shape[0]} boxes and {score.shape[0]} scores; they must match"
            )
        if not self._videos or self._videos[-1] != key[0]:
            if self._videos:
                self._video_key_offsets.append(len(self._timestamps))
            self._videos.append(key[0])
        self._timestamps.append(key[1])
        self._key_row_offsets.append(self._key_row_offsets[-1] + feats.shape[0])
        self._last_key = key
        self._pending.append((feats, box, score))
        self._pending_rows += feats.shape[0]
        if self._pending_rows >= self._block_rows:
            self._flush()

    def _flush(self) -> None:
        if not self._pending_rows:
            self._pending.clear()
            return
        feats = np.concatenate([p[0] for p in self._pending])
        boxes = np.concatenate([p[1] for p in self._pending])
        scores = np.concatenate([p[2] for p in self._pending])
        start, stop = self._rows_written, self._rows_written + feats.shape[0]
        try:
            for dataset, block in ((self._features, feats), (self._boxes, boxes), (self._scores, scores)):
                dataset.resize(stop, axis=0)
                dataset[start:stop] = block
        except (OSError, RuntimeError) as error:
            raise RunError(f"{self.tmp_path}: writing the bank failed ({io_error_text(error)})") from error
        self._rows_written = stop
        self._pending.clear()
        self._pending_rows = 0

    def close(self) -> Path:
        """Write the index, close the file and rename it into place. Returns the final path."""
        if self._closed:
            return self.path
        try:
            self._flush()
            video_offsets = self._video_key_offsets + [len(self._timestamps)] if self._videos else [0]
            string_dtype = h5py.string_dtype("utf-8")
            index = (
                (fmt.VIDEOS, np.array(self._videos, dtype=object), string_dtype),
                (fmt.VIDEO_KEY_OFFSETS, np.asarray(video_offsets, dtype=np.int64), None),
                (fmt.TIMESTAMPS, np.asarray(self._timestamps, dtype=np.int32), None),
                (fmt.KEY_ROW_OFFSETS, np.asarray(self._key_row_offsets, dtype=np.int64), None),
            )
            for name, values, dtype in index:
                data = self._file.create_dataset(name, data=values, dtype=dtype)
                data.attrs[fmt.DIGEST_ATTR] = fmt.index_digest(self._videos if dtype else values)
            self._file.flush()
            self._file.close()
            publish(self.tmp_path, self.path, replace=self.replace)
        except (OSError, RuntimeError) as error:
            self.abort()
            raise RunError(f"{self.tmp_path}: writing the bank failed ({io_error_text(error)})") from error
        except BaseException:
            self.abort()
            raise
        self._closed = True
        return self.path

    def abort(self) -> None:
        """Drop the temporary file; nothing with the bank's name is left behind."""
        self._closed = True
        if self._file.id.valid:
            # After a failed write (disk full) HDF5's close fails to flush and leaves the file open;
            # at interpreter exit HDF5 tries again and crashes (SIGSEGV). Truncating frees space for
            # the flush; a low-level close of the file id drops whatever is still left open.
            try:
                os.truncate(self.tmp_path, 0)
            except OSError:
                pass  # a read-only or vanished file: nothing to free
            for close in (self._file.close, self._file.id.close):  # the second drops what the first left
                try:
                    close()
                except Exception:  # noqa: BLE001 - closing a half-written file must not mask the real error
                    pass
                if not self._file.id.valid:
                    break
        discard(self.tmp_path)

    def __enter__(self) -> BankWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()
