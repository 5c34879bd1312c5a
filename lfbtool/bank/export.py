"""Export a bank for other readers: MMAction2's LFB pickle, or one ``.npz`` per video.

Both read the bank one video at a time. The pickle must still be built whole in memory before
``torch.save`` (that is the format MMAction2's ``LFB`` loads); the npz directory never holds more
than one video. Outputs appear under their name only when complete.

Only the pickle needs torch (``torch.save`` writes it, tensors and all), so torch is imported there
and nowhere else: ``export --format npz-dir`` reads the bank with h5py and numpy alone.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING

import numpy as np

from lfbtool._io.atomic import (
    already_exists,
    atomic_write,
    check_output_path,
    discard,
    io_error_text,
    make_directory,
    publish_directory,
    temporary_path,
)
from lfbtool._io.lock import remove_dead_temporaries
from lfbtool.bank.bank_file import BankFile
from lfbtool.errors import LfbError, RunError

if TYPE_CHECKING:
    import torch

    from lfbtool.bank.reader import FeatureBank

MANIFEST = "bank.json"


@dataclass(frozen=True)
class ExportSummary:
    path: Path
    videos: int
    keyframes: int
    rows: int


def _prepare_output(path: Path, overwrite: bool, *, directory: bool = False) -> None:
    """An existing output needs ``--force``; a killed export's temporaries (of processes gone) are removed."""
    check_output_path(path, directory=directory, overwrite=overwrite)
    make_directory(path.parent)
    remove_dead_temporaries([*path.parent.glob(f"{path.name}.tmp-*"), *path.parent.glob(f"{path.name}.old.tmp-*")])


def mmaction_dict(bank: FeatureBank) -> dict[str, dict[int, torch.Tensor]]:
    """``{video_id: {timestamp: tensor[n, C]}}`` in the stored dtype, as MMAction2's ``LFB`` indexes it.

    The tensors of one video are views of that video's rows, so ``torch.save`` writes each video's
    storage once.
    """
    lfb: dict[str, dict[int, torch.Tensor]] = {}
    for video in bank.videos:
        rows = bank.read_video(video)
        offsets = rows.row_offsets.tolist()
        lfb[video] = {
            ts: rows.features[offsets[i] : offsets[i + 1]] for i, ts in enumerate(rows.timestamps.tolist())
        }
    return lfb


def export_mmaction_pkl(bank_path: str | Path, out: str | Path, *, overwrite: bool = False) -> ExportSummary:
    """Write ``out`` (e.g. ``lfb_train.pkl``) for MMAction2's ``LFB(lfb_prefix_path=...)``."""
    import torch

    from lfbtool.bank.reader import FeatureBank

    out = Path(out)
    _prepare_output(out, overwrite)
    with FeatureBank(bank_path) as bank:
        lfb = mmaction_dict(bank)
        summary = ExportSummary(out, len(lfb), len(bank), sum(int(t.shape[0]) for v in lfb.values() for t in v.values()))
    atomic_write(out, lambda handle: torch.save(lfb, handle), replace=overwrite)
    return summary


def _npz_name(video: str, bank_path: Path) -> str:
    if not video or video in (".", "..") or "/" in video or "\\" in video or "\0" in video:
        raise LfbError(f"{bank_path}: video id {video!r} cannot be a file name; export it as mmaction-pkl")
    return f"{video}.npz"


def export_npz_dir(bank_path: str | Path, out_dir: str | Path, *, overwrite: bool = False) -> ExportSummary:
    """One ``<video_id>.npz`` per video (features, timestamps, key_row_offsets, boxes, scores) + bank.json.

    ``key_row_offsets`` count from 0 within the video: rows of ``timestamps[i]`` are
    ``features[key_row_offsets[i]:key_row_offsets[i + 1]]``. The directory is written as
    ``OUT.tmp-<host>-<pid>`` and renamed to ``OUT`` when complete (:func:`publish_directory`), so ``OUT``
    only ever holds one whole export; ``overwrite`` replaces an earlier export as a whole.
    """
    out_dir = Path(out_dir)
    if _holds_cwd(out_dir):  # "-o .": renamed over, the shell would sit in a deleted directory
        raise LfbError(f"{out_dir}: is the current directory or holds it; export into a new directory (e.g. -o npz)")
    check_output_path(out_dir, directory=True)
    if out_dir.is_dir() and any(out_dir.iterdir()):
        if not overwrite:
            raise already_exists(out_dir)
        _refuse_foreign_files(out_dir)
    _prepare_output(out_dir, overwrite=True, directory=True)  # an existing one checked above
    keyframes = rows_total = 0
    tmp = temporary_path(out_dir)
    try:
        with BankFile(bank_path) as bank:
            videos = bank.videos
            names = {video: _npz_name(video, Path(bank_path)) for video in videos}
            manifest = {"bank": str(bank_path), **bank.attrs, "videos": videos}
            tmp.mkdir()
            for video in videos:
                rows = bank.read_video(video, with_boxes=True)
                arrays = {
                    "features": rows.features,
                    "timestamps": rows.timestamps.astype(np.int32),
                    "key_row_offsets": rows.row_offsets.astype(np.int64),
                    "boxes": rows.boxes,
                    "scores": rows.scores,
                }
                _write_synced(tmp / names[video], lambda handle, a=arrays: np.savez(handle, **a))
                keyframes += len(rows.timestamps)
                rows_total += int(rows.features.shape[0])
        text = json.dumps(manifest, indent=1).encode()
        _write_synced(tmp / MANIFEST, lambda handle: handle.write(text))
        publish_directory(tmp, out_dir, replace=overwrite)
    except (OSError, RuntimeError) as error:
        raise RunError(f"{out_dir}: cannot write ({io_error_text(error)})") from error
    finally:
        discard(tmp)
    return ExportSummary(out_dir, len(videos), keyframes, rows_total)


def _write_synced(path: Path, write: Callable[[IO[bytes]], object]) -> None:
    """One file of the temporary directory, on disk before the directory is renamed into place."""
    with open(path, "wb") as handle:
        write(handle)
        handle.flush()
        os.fsync(handle.fileno())


def _holds_cwd(path: Path) -> bool:
    try:
        here = Path.cwd()
    except OSError:  # the working directory was deleted: it is nobody's output
        return False
    return path.resolve() in (here, *here.parents)


def _refuse_foreign_files(out_dir: Path) -> None:
    """``--force`` replaces an earlier export, never a directory of other files (``-o ~ --force``)."""
    for entry in out_dir.iterdir():
        if not (entry.is_file() and (entry.suffix == ".npz" or entry.name == MANIFEST)):
            raise LfbError(f"{out_dir}: holds {entry.name!r}, which no export writes; not replacing it "
                           "(export into a new or empty directory)")
