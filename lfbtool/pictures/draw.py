"""Drawing with Pillow alone: keyframe tiles with their boxes, contact sheets, stacking, saving a PNG.

Pillow, not matplotlib: it is already installed (torchvision depends on it), imports in tens of
milliseconds without torch, and boxes, labels and bars are all these pictures need. Boxes are drawn with
``ImageDraw.rectangle``, the call torchvision's ``draw_bounding_boxes`` makes itself, so ``lfbtool
show`` draws without torch. Geometry comes back with every picture (:class:`Tile`), so tests and
callers can find a key's image by its pixels.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field, replace
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from lfbtool._io.atomic import atomic_write
from lfbtool.errors import LfbError
from lfbtool.keys import key_text

if TYPE_CHECKING:
    from lfbtool.pictures.strip import StripGeometry

Key = tuple[str, int]

#: Tiles are at least this many pixels on their short side (small frames are scaled up, bilinear).
TILE_SHORT_SIDE = 256
#: A contact sheet is at most this wide; it wraps into rows of tiles.
SHEET_WIDTH = 1400
BACKGROUND = (255, 255, 255)
TEXT = (20, 20, 20)
MUTED = (110, 110, 110)
#: Box colours, one per box of a tile in turn (bright, apart from each other and from grey).
PALETTE = ((255, 40, 40), (40, 220, 40), (40, 120, 255), (255, 200, 0), (255, 0, 255), (0, 230, 230))
GAP = 8
TEXT_SIZE = 14
TITLE_SIZE = 16


@lru_cache(maxsize=8)
def font(size: int = TEXT_SIZE) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    """Pillow's bundled font at ``size`` px (Pillow >= 10.1 with FreeType; else its small bitmap font)."""
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError, ImportError):  # an old Pillow, or one built without FreeType
        return ImageFont.load_default()


def text_size(text: str, size: int = TEXT_SIZE) -> tuple[int, int]:
    left, top, right, bottom = font(size).getbbox(text)
    return int(math.ceil(right)), int(math.ceil(bottom))


def line_height(size: int = TEXT_SIZE) -> int:
    return text_size("Ag,0123", size)[1] + 4


@dataclass(frozen=True)
class Tile:
    """Where a keyframe image lies in a picture: ``(x, y, width, height)`` of the image, caption below."""

    key: Key
    frame_number: int
    box: tuple[int, int, int, int]

    def moved(self, dx: int, dy: int) -> Tile:
        x, y, w, h = self.box
        return replace(self, box=(x + dx, y + dy, w, h))


@dataclass
class Picture:
    """A drawn picture and where each part of it lies (tiles by key, strips by video)."""

    image: Image.Image
    tiles: list[Tile] = field(default_factory=list)
    strips: list[StripGeometry] = field(default_factory=list)
    path: Path | None = None
    videos_in_bank: int = 0

    def tile(self, video: str, timestamp: int) -> Tile:
        return next(t for t in self.tiles if t.key == (video, timestamp))

    def strip(self, video: str) -> StripGeometry:
        return next(s for s in self.strips if s.data.video == video)


def tile_shape(height: int, width: int, short_side: int = TILE_SHORT_SIDE) -> tuple[int, int]:
    """``(h, w)`` of a tile: the frame scaled so its short side is ``short_side``, aspect kept."""
    scale = short_side / min(height, width)
    return max(1, round(height * scale)), max(1, round(width * scale))


def box_pixels(box: np.ndarray, height: int, width: int) -> tuple[int, int, int, int]:
    """Normalised ``x1 y1 x2 y2`` -> the first and last pixel column / row the box covers (inclusive)."""
    x1, y1, x2, y2 = (float(v) for v in box[:4])
    left, top = round(x1 * width), round(y1 * height)
    right, bottom = round(x2 * width) - 1, round(y2 * height) - 1
    clip = lambda v, hi: min(max(v, 0), hi)  # noqa: E731
    return clip(left, width - 1), clip(top, height - 1), clip(max(right, left), width - 1), clip(max(bottom, top), height - 1)


def draw_boxes(image: Image.Image, boxes: np.ndarray, scores: np.ndarray | None = None) -> None:
    """Outline each normalised box in its palette colour (the outline lies inside the box), its score
    above it (inside when there is no room above); NaN scores (annotated boxes) get no label, NaN
    boxes (unknown: banks imported from MMAction2) are not drawn."""
    draw = ImageDraw.Draw(image)
    width, height = image.size
    line = max(2, min(width, height) // 128)
    for i, box in enumerate(np.asarray(boxes, dtype=np.float64).reshape(-1, 4)):
        if not np.isfinite(box).all():
            continue
        colour = PALETTE[i % len(PALETTE)]
        left, top, right, bottom = box_pixels(box, height, width)
        draw.rectangle((left, top, right, bottom), outline=colour, width=line)
        if scores is None or not np.isfinite(scores[i]):
            continue
        label = f"{float(scores[i]):.2f}"
        w, h = text_size(label, 12)
        y = top - h - 3 if top - h - 3 >= 0 else top + line
        draw.rectangle((left, y, left + w + 3, y + h + 2), fill=colour)
        draw.text((left + 2, y), label, fill=(0, 0, 0), font=font(12))


def render_tile(frame: np.ndarray, boxes: np.ndarray, scores: np.ndarray | None, caption: list[str],
                short_side: int = TILE_SHORT_SIDE) -> tuple[Image.Image, int]:
    """A keyframe image ``[H, W, 3]`` uint8 scaled to ``short_side``, boxes drawn, caption lines below;
    returns the tile and the height of its image part."""
    frame = np.ascontiguousarray(frame, dtype=np.uint8)
    h, w = tile_shape(frame.shape[0], frame.shape[1], short_side)
    picture = Image.fromarray(frame, "RGB").resize((w, h), Image.Resampling.BILINEAR)
    draw_boxes(picture, boxes, scores)
    tile = Image.new("RGB", (w, h + len(caption) * line_height()), BACKGROUND)
    tile.paste(picture, (0, 0))
    draw = ImageDraw.Draw(tile)
    for i, text in enumerate(caption):
        draw.text((2, h + 2 + i * line_height()), text, fill=TEXT if i == 0 else MUTED, font=font())
    return tile, h


def tile_caption(key: Key, frame_number: int, scores: np.ndarray) -> list[str]:
    """``video,0003`` then ``frame 14 · 2 persons``: the key and what was read for it."""
    n = len(scores)
    persons = "no person" if n == 0 else f"{n} person{'s' if n != 1 else ''}"
    return [key_text(*key), f"frame {frame_number} · {persons}"]


def contact_sheet(tiles: list[tuple[Key, int, Image.Image, int]], title: str) -> tuple[Image.Image, list[Tile]]:
    """Tiles ``(key, frame number, tile image, image height)`` in rows under a title line."""
    cell_w = max(t[2].width for t in tiles)
    cell_h = max(t[2].height for t in tiles)
    columns = max(1, min(len(tiles), (SHEET_WIDTH + GAP) // (cell_w + GAP)))
    rows = math.ceil(len(tiles) / columns)
    top = line_height(TITLE_SIZE) + GAP
    sheet = Image.new("RGB", (columns * (cell_w + GAP) - GAP, top + rows * (cell_h + GAP) - GAP), BACKGROUND)
    ImageDraw.Draw(sheet).text((0, 0), title, fill=TEXT, font=font(TITLE_SIZE))
    placed = []
    for i, (key, number, image, image_h) in enumerate(tiles):
        x, y = (i % columns) * (cell_w + GAP), top + (i // columns) * (cell_h + GAP)
        sheet.paste(image, (x, y))
        placed.append(Tile(key, number, (x, y, image.width, image_h)))
    return sheet, placed


def stack(parts: list[Image.Image]) -> tuple[Image.Image, list[int]]:
    """Pictures one under another on white, left-aligned; returns the picture and each part's top."""
    width = max(p.width for p in parts)
    height = sum(p.height for p in parts) + GAP * 2 * (len(parts) - 1)
    canvas = Image.new("RGB", (width, height), BACKGROUND)
    tops, y = [], 0
    for part in parts:
        canvas.paste(part, (0, y))
        tops.append(y)
        y += part.height + 2 * GAP
    return canvas, tops


def spread(count: int, wanted: int) -> list[int]:
    """Up to ``wanted`` indices of ``range(count)`` evenly spread, first and last included."""
    if count <= wanted:
        return list(range(count))
    return sorted({round(i * (count - 1) / (wanted - 1)) for i in range(wanted)}) if wanted > 1 else [count // 2]


def check_output(path: str | os.PathLike[str]) -> Path:
    """A PNG path whose directory exists and is writable, else one line naming it (before any work)."""
    path = Path(path)
    if path.suffix.lower() != ".png":
        raise LfbError(f"{path}: the picture is a PNG; name the output *.png")
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise LfbError(f"{path}: cannot write the picture: {parent} is not a directory")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise LfbError(f"{path}: cannot write the picture: {parent} is not writable")
    if path.is_dir():
        raise LfbError(f"{path}: is a directory, not a picture file")
    return path


def ensure_directory(directory: str | os.PathLike[str]) -> Path:
    """Create a directory for pictures (parents too), or one line saying why it cannot be."""
    directory = Path(directory)
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise LfbError(f"{directory}: cannot create the picture directory ({error.strerror or error})") from None
    if not os.access(directory, os.W_OK | os.X_OK):
        raise LfbError(f"{directory}: the picture directory is not writable")
    return directory


def save_png(image: Image.Image, path: str | os.PathLike[str]) -> Path:
    """Write ``image`` as PNG atomically (a half-written picture never carries the name)."""
    return atomic_write(Path(path), lambda handle: image.save(handle, format="PNG", optimize=True))
