"""``lfbtool show``: a picture of a bank, per video a strip (persons per second, similarity band) and,
given frames, a contact sheet of keyframe images with the bank's stored boxes.

Without frames nothing here imports torch (h5py, numpy, Pillow); with frames the frame readers do
(:mod:`lfbtool.pictures.keyframes` says why).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw

from lfbtool.bank.bank_file import BankFile, BankKeyError
from lfbtool.errors import LfbError
from lfbtool.pictures.draw import (
    BACKGROUND,
    TEXT,
    TILE_SHORT_SIDE,
    TITLE_SIZE,
    Picture,
    Tile,
    check_output,
    contact_sheet,
    font,
    line_height,
    render_tile,
    save_png,
    spread,
    stack,
    text_size,
    tile_caption,
)
from lfbtool.pictures.keyframes import bank_sampling, clip_settings, fps_text, read_keyframes
from lfbtool.pictures.strip import StripGeometry, draw_strip, strip_data

#: Without ``--video``, at most this many videos (the first, sorted) are drawn.
MAX_VIDEOS = 8


@dataclass(frozen=True)
class FrameOptions:
    """Where keyframe images come from; ``None`` fields take what the bank recorded."""

    frames_root: Path | None = None
    videos_root: Path | None = None
    fps: str | None = None
    timestamp_start: int | None = None
    start_index: int | None = None
    frame_template: str | None = None
    video_ext: str | None = None

    @property
    def given(self) -> bool:
        return self.frames_root is not None or self.videos_root is not None


def _sheet(bank: BankFile, video: str, settings: Any, tiles: int, tile_size: int) -> tuple[Image.Image, list[Tile]]:
    k0, k1 = bank.key_range(video)
    timestamps = bank.timestamps[k0:k1].tolist()
    chosen = [timestamps[i] for i in spread(len(timestamps), tiles)]
    fps, frames = read_keyframes(video, chosen, settings)
    drawn = []
    for timestamp, number, frame in frames:
        k = k0 + timestamps.index(timestamp)
        r0, r1 = int(bank.key_row_offsets[k]), int(bank.key_row_offsets[k + 1])
        boxes, scores = bank.rows(bank.boxes, r0, r1), bank.rows(bank.scores, r0, r1)
        key = (video, timestamp)
        image, image_height = render_tile(frame, boxes, scores, tile_caption(key, number, scores), tile_size)
        drawn.append((key, number, image, image_height))
    title = (f"{video}: {len(chosen)} of {len(timestamps)} keyframes with the bank's boxes · fps {fps_text(fps)}, "
             f"timestamp start {settings.timestamp_start}, start index {settings.start_index}")
    return contact_sheet(drawn, title)


def show_bank(bank_path: str | os.PathLike[str], out: str | os.PathLike[str], *, videos: list[str] | None = None,
              frames: FrameOptions | None = None, tiles: int = 8, tile_size: int = TILE_SHORT_SIDE) -> Picture:
    """Draw ``bank_path`` into the PNG ``out`` and return the picture with its geometry."""
    if tiles < 1:
        raise LfbError(f"--tiles must be >= 1, got {tiles}")
    if tile_size < TILE_SHORT_SIDE:
        raise LfbError(f"--tile-size must be at least {TILE_SHORT_SIDE} (legible at 100 %), got {tile_size}")
    out = check_output(out)
    frames = frames or FrameOptions()
    bank = BankFile(bank_path)
    try:
        for video in videos or []:
            if video not in bank.video_index:
                raise BankKeyError(f"video {video!r} is not in bank {bank.path}")
        chosen = list(dict.fromkeys(videos)) if videos else bank.videos[:MAX_VIDEOS]
        settings = None
        if frames.given:
            settings = clip_settings(bank_sampling(bank.attrs.get("config"), str(bank.path)), str(bank.path),
                                     frames_root=frames.frames_root, videos_root=frames.videos_root, fps=frames.fps,
                                     timestamp_start=frames.timestamp_start, start_index=frames.start_index,
                                     frame_template=frames.frame_template, video_ext=frames.video_ext)
        header = (f"{bank.path.name}: {len(bank.videos)} videos, {len(bank.timestamps)} keys, "
                  f"{int(bank.key_row_offsets[-1])} persons, {bank.feature_dim}-d {bank.attrs.get('dtype')}; "
                  f"showing {len(chosen)} video{'s' if len(chosen) != 1 else ''}"
                  + ("" if frames.given else " (no frames given: strips only)"))
        parts: list[Image.Image] = [_header(header)]
        pieces: list[tuple[int, Any]] = []
        for video in chosen:
            image, geometry = draw_strip(strip_data(bank, video))
            pieces.append((len(parts), geometry))
            parts.append(image)
            if settings is not None:
                image, placed = _sheet(bank, video, settings, tiles, tile_size)
                pieces.append((len(parts), placed))
                parts.append(image)
        videos_in_bank = len(bank.videos)
    finally:
        bank.close()
    canvas, tops = stack(parts)
    picture = Picture(canvas, path=out, videos_in_bank=videos_in_bank)
    for index, piece in pieces:
        if isinstance(piece, StripGeometry):
            picture.strips.append(piece.moved(0, tops[index]))
        else:
            picture.tiles.extend(t.moved(0, tops[index]) for t in piece)
    save_png(canvas, out)
    return picture


def _header(text: str) -> Image.Image:
    image = Image.new("RGB", (text_size(text, TITLE_SIZE)[0] + 4, line_height(TITLE_SIZE)), BACKGROUND)
    ImageDraw.Draw(image).text((0, 0), text, fill=TEXT, font=font(TITLE_SIZE))
    return image
