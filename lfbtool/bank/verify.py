"""``check_bank``: check a bank file end to end and raise :class:`LfbError` with the first problem.

Steps 1-5 are :func:`lfbtool.bank.format.read_checked_index`, the check every reader of a bank runs;
verify adds step 6. The first failure is reported, naming the dataset, row or key:

1. the file opens as HDF5; ``format`` is ``"lfbtool-bank"``, ``format_version`` is one this lfbtool
   reads; ``feature_dim`` and ``dtype`` are valid;
2. every dataset is present with the documented rank and dtype kind, ``/features`` has
   ``feature_dim`` columns and the ``dtype`` attribute's type; no dataset is a link, external storage
   or a virtual dataset; in a version-2 bank the row datasets carry fletcher32 checksums and the
   index datasets' sha256 attributes match their content;
3. ``/features``, ``/boxes`` and ``/scores`` have the same row count;
4. ``/video_key_offsets`` has V+1 entries, starts at 0, strictly increases (every listed video has a
   key) and ends at the number of timestamps; ``/key_row_offsets`` has K+1 entries, starts at 0, never
   decreases (a key may hold no rows: MMAction2 imports allow it) and ends at the row count;
5. ``/videos`` is sorted (Python string order) and unique; timestamps strictly increase within a video;
6. a scan of the rows in blocks (memory bounded by the block size, not the bank size): features are
   finite (no NaN/Inf); scores are finite or NaN (NaN = boxes from annotations); boxes are finite,
   except in a bank imported from an MMAction2 pickle, which holds no boxes: there a box row may be
   all-NaN ("unknown"). Inf is never allowed. HDF5 checks each chunk's fletcher32 on read: a damaged
   chunk is an error naming its rows.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from lfbtool.bank import format as fmt
from lfbtool.errors import LfbError

#: Bytes of feature rows read at a time by the NaN/Inf scan.
SCAN_BYTES = 8 << 20


@dataclass(frozen=True)
class VerifyReport:
    """What a verified bank holds (for the ``ok:`` line)."""

    path: Path
    format_version: int
    feature_dim: int
    dtype: str
    mode: str
    videos: int
    keys: int
    rows: int
    imported: bool



def is_imported(config_json: str) -> bool:
    """True for a bank converted from an MMAction2 pickle (or merged only from such banks)."""
    try:
        config = json.loads(config_json or "{}")
    except ValueError:
        return False
    if not isinstance(config, dict):
        return False
    if config.get("source") == "mmaction2-pkl":
        return True
    parts = config.get("merged_from")
    return bool(parts) and all(
        isinstance(p, dict) and isinstance(p.get("config"), dict) and p["config"].get("source") == "mmaction2-pkl"
        for p in parts
    )


def check_bank(path: str | Path) -> VerifyReport:
    """Verify ``path`` (see the module docstring) and describe it; raise LfbError at the first problem."""
    path = Path(path)
    with fmt.open_bank(path) as handle:
        index = fmt.read_checked_index(handle, str(path))
        imported = is_imported(index.attrs["config"])
        _scan_rows(handle, index, imported)
    return VerifyReport(
        path=path, format_version=int(index.attrs["format_version"]), feature_dim=index.feature_dim,
        dtype=index.dtype, mode=index.mode, videos=len(index.videos), keys=index.num_keys, rows=index.num_rows,
        imported=imported,
    )


def _scan_rows(handle: h5py.File, index: fmt.BankIndex, imported: bool) -> None:
    """Read every row in blocks (checksums are checked by HDF5 on read) and check the values."""
    what = index.label
    features, boxes, scores = (handle[name] for name in fmt.ROW_DATASETS)
    n = index.num_rows
    block = max(fmt.FEATURE_CHUNK_ROWS, SCAN_BYTES // max(1, index.feature_dim * features.dtype.itemsize))
    for start in range(0, n, block):
        stop = min(n, start + block)
        fmt.refuse_non_finite(fmt.read_rows(features, start, stop, what), start, index)
        box = fmt.read_rows(boxes, start, stop, what)
        ok = np.isfinite(box).all(axis=1)
        if imported:
            ok |= np.isnan(box).all(axis=1)
        if not ok.all():
            row = start + int(np.argmin(ok))
            why = "" if imported else " (only banks imported from MMAction2 pickles may have unknown boxes)"
            raise LfbError(f"{what}: key {index.key_of_row(row)}: /boxes row {row} holds NaN or Inf{why}")
        score = fmt.read_rows(scores, start, stop, what)
        inf = np.isinf(score)
        if inf.any():
            row = start + int(np.argmax(inf))
            raise LfbError(f"{what}: key {index.key_of_row(row)}: /scores row {row} is infinite")
