"""``lfbtool detect --preview DIR``: per video a PNG contact sheet of evenly spread keyframes with the
detected boxes and scores, the key under each tile, read back from the output file just written.

Reading the written file (not the in-memory results) makes the preview show exactly what the run
left on disk, the same way for a fresh, a resumed and an already complete run.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from lfbtool.pictures.draw import (
    Picture,
    contact_sheet,
    ensure_directory,
    render_tile,
    save_png,
    spread,
    tile_caption,
)
from lfbtool.pictures.keyframes import fps_text, read_keyframes

if TYPE_CHECKING:
    from lfbtool.data.clips import ClipSettings

Key = tuple[str, int]
PREVIEW_FRAMES = 12


def write_previews(out_file: str | os.PathLike[str], keys: list[Key], settings: ClipSettings,
                   preview_dir: str | os.PathLike[str], frames_per_video: int = PREVIEW_FRAMES) -> list[Picture]:
    """``preview_dir/<video>.png`` for every video among ``keys`` (every keyframe detected on, with or
    without persons); the boxes come from ``out_file`` (.pkl or .csv). Returns the pictures written."""
    from lfbtool.data.ava import read_proposals

    found = read_proposals(out_file)
    directory = ensure_directory(preview_dir)
    by_video: dict[str, list[int]] = {}
    for video, timestamp in sorted(keys):
        by_video.setdefault(video, []).append(timestamp)
    written = []
    empty = np.zeros((0, 5), dtype=np.float32)
    for video, timestamps in by_video.items():
        chosen = [timestamps[i] for i in spread(len(timestamps), frames_per_video)]
        fps, frames = read_keyframes(video, chosen, settings)
        drawn = []
        for timestamp, number, frame in frames:
            rows = np.asarray(found.get((video, timestamp), empty), dtype=np.float32).reshape(-1, 5)
            image, height = render_tile(frame, rows[:, :4], rows[:, 4], tile_caption((video, timestamp), number, rows[:, 4]))
            drawn.append(((video, timestamp), number, image, height))
        title = (f"{video}: {len(chosen)} of {len(timestamps)} keyframes, persons from {Path(out_file).name} · "
                 f"fps {fps_text(fps)}, timestamp start {settings.timestamp_start}, start index {settings.start_index}")
        sheet, tiles = contact_sheet(drawn, title)
        path = directory / f"{video}.png"
        if path.parent != directory:  # a video id with a sub-directory (``camera1/clip``)
            ensure_directory(path.parent)
        written.append(Picture(sheet, tiles=tiles, path=save_png(sheet, path)))
    return written
