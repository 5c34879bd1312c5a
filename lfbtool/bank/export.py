"""Export a bank for other readers: MMAction2's LFB pickle, or one ``.npz`` per video.

Both read the bank one video at a time. The pickle must still be built whole in memory before
``torch.save`` (that is the format MMAction2's ``LFB`` loads); the npz directory never holds more
than one video. Outputs appear under their name only when complete.

Only the pickle needs torch (``torch.save`` writes it, tensors and all), so torch is imported there
and nowhere else: ``export --format npz-dir`` reads the bank with h5py and numpy alone.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from lfbtool._io.atomic import atomic_write
from lfbtool.bank.bank_file import BankFile
from lfbtool.errors import LfbError

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


def _refuse_existing(path: Path, overwrite: bool) -> None:
    if path.exists() and not overwrite:
        raise LfbError(f"{path}: already exists; pass --force to replace it")


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
    _refuse_existing(out, overwrite)
    with FeatureBank(bank_path) as bank:
        lfb = mmaction_dict(bank)
        summary = ExportSummary(out, len(lfb), len(bank), sum(int(t.shape[0]) for v in lfb.values() for t in v.values()))
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(out, lambda handle: torch.save(lfb, handle))
    return summary


def _npz_name(video: str, bank_path: Path) -> str:
    if not video or video in (".", "..") or "/" in video or "\\" in video or "\0" in video:
        raise LfbError(f"{bank_path}: video id {video!r} cannot be a file name; export it as mmaction-pkl")
    return f"{video}.npz"


def export_npz_dir(bank_path: str | Path, out_dir: str | Path, *, overwrite: bool = False) -> ExportSummary:
    """One ``<video_id>.npz`` per video (features, timestamps, key_row_offsets, boxes, scores) + bank.json.

    ``key_row_offsets`` count from 0 within the video: rows of ``timestamps[i]`` are
    ``features[key_row_offsets[i]:key_row_offsets[i + 1]]``.
    """
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise LfbError(f"{out_dir}: exists and is not a directory")
    if out_dir.is_dir() and any(out_dir.glob("*.npz")) and not overwrite:
        raise LfbError(f"{out_dir}: already holds .npz files; pass --force to replace them")
    out_dir.mkdir(parents=True, exist_ok=True)
    keyframes = rows_total = 0
    bank = BankFile(bank_path)
    try:
        videos = bank.videos
        names = {video: _npz_name(video, Path(bank_path)) for video in videos}
        for video in videos:
            rows = bank.read_video(video, with_boxes=True)
            arrays = {
                "features": rows.features,
                "timestamps": rows.timestamps.astype(np.int32),
                "key_row_offsets": rows.row_offsets.astype(np.int64),
                "boxes": rows.boxes,
                "scores": rows.scores,
            }
            atomic_write(out_dir / names[video], lambda handle, a=arrays: np.savez(handle, **a))
            keyframes += len(rows.timestamps)
            rows_total += int(rows.features.shape[0])
        manifest = {"bank": str(bank_path), **bank.attrs, "videos": videos}
    finally:
        bank.close()
    text = json.dumps(manifest, indent=1).encode()
    atomic_write(out_dir / MANIFEST, lambda handle: handle.write(text))
    return ExportSummary(out_dir, len(videos), keyframes, rows_total)
