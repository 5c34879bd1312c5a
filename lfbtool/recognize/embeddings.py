"""Clip embeddings of ``recognize --features``: per input the classifier's input (the pooled feature),
in one HDF5 file with its settings and checkpoint provenance.

Layout (``format="lfbtool-embeddings"``, ``format_version=1``, in the spirit of anndata's
``encoding-type`` / ``encoding-version``)::

    attrs: format, format_version, settings (JSON), fingerprint, checkpoint_sha256 ("" without a
           checkpoint file), average_clips, created_by
    /inputs      (N,)          utf-8   inputs that were scored, in input order
    /embeddings  (N, D)        float32 mean over views (score, prob)
                 (N, V, D)     float32 per view, crop-major (none)
    /num_views   (N,)          int32
    /failed      (M,)          utf-8   inputs that failed (no embedding)

While a run goes on, embeddings travel in recognize's parts with their records
(:mod:`lfbtool.recognize._records`), so a killed run resumes and torchrun ranks never share a file;
rank 0 writes this file (temporary name, fsync, rename) when every input is done.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from lfbtool._io.atomic import atomic_output, os_error_text
from lfbtool.bank.format import as_text
from lfbtool.errors import LfbError

__all__ = ["FORMAT", "FORMAT_VERSION", "Embeddings", "read_embeddings", "write_embeddings"]

FORMAT = "lfbtool-embeddings"
FORMAT_VERSION = 1

@dataclass
class Embeddings:
    inputs: list[str]
    embeddings: np.ndarray  # [N, D] or [N, V, D]
    num_views: np.ndarray
    failed: list[str]
    settings: dict[str, Any]
    fingerprint: str
    checkpoint_sha256: str
    average_clips: str

def write_embeddings(
    path: str | os.PathLike[str],
    records: Sequence[Mapping[str, Any]],
    rows: Mapping[int, np.ndarray],
    *,
    settings: Mapping[str, Any],
    fingerprint: str,
    created_by: str,
) -> Path:
    """Write the file (atomically) from ``records`` (in input order) and the embedding of each scored
    one, by its index."""
    path = Path(path)
    ok = [r for r in records if r.get("error") is None]
    missing = [r["input"] for r in ok if int(r["index"]) not in rows]
    if missing:
        raise LfbError(f"{path}: no embedding was stored for {missing[0]}; rerun with --overwrite")
    arrays = [np.asarray(rows[int(r["index"])], dtype=np.float32) for r in ok]
    shape = arrays[0].shape if arrays else (0,)
    if any(a.shape != shape for a in arrays):
        raise LfbError(f"{path}: embeddings differ in shape; rerun with --overwrite")
    stacked = np.stack(arrays) if arrays else np.zeros((0, 0), np.float32)
    text = h5py.string_dtype("utf-8")
    with atomic_output(path) as tmp, h5py.File(tmp, "w") as handle:
        handle.attrs.update({
            "format": FORMAT, "format_version": FORMAT_VERSION,
            "settings": json.dumps(dict(settings), sort_keys=True), "fingerprint": fingerprint,
            "checkpoint_sha256": str(settings.get("checkpoint_sha256") or ""),
            "average_clips": str(settings.get("average_clips", "")), "created_by": created_by,
        })
        handle.create_dataset("inputs", data=[str(r["input"]) for r in ok], dtype=text)
        handle.create_dataset("embeddings", data=stacked)
        handle.create_dataset("num_views", data=np.array([int(r["views"]) for r in ok], dtype=np.int32))
        handle.create_dataset("failed", data=[str(r["input"]) for r in records if r.get("error")], dtype=text)
    return path


def read_embeddings(path: str | os.PathLike[str]) -> Embeddings:
    """Read a ``--features`` file back; a file of another format or a newer version is refused."""
    try:
        handle = h5py.File(path, "r")
    except OSError as error:
        raise LfbError(f"{path}: cannot open as HDF5 ({os_error_text(error)})") from error
    with handle:
        if as_text(handle.attrs.get("format")) != FORMAT:
            raise LfbError(f"{path}: not an lfbtool embeddings file (format attribute {handle.attrs.get('format')!r})")
        version = int(handle.attrs["format_version"])
        if version > FORMAT_VERSION:
            raise LfbError(f"{path}: format_version {version} is newer than this lfbtool reads ({FORMAT_VERSION})")
        return Embeddings(
            inputs=[as_text(v) for v in handle["inputs"][()]],
            embeddings=handle["embeddings"][()],
            num_views=handle["num_views"][()],
            failed=[as_text(v) for v in handle["failed"][()]],
            settings=json.loads(as_text(handle.attrs["settings"])),
            fingerprint=as_text(handle.attrs["fingerprint"]),
            checkpoint_sha256=as_text(handle.attrs["checkpoint_sha256"]),
            average_clips=as_text(handle.attrs["average_clips"]),
        )

