"""Grad-CAM pictures: the heat map blended over the chosen views' frames, as a PNG sheet (the input's
name, top-1 label and score, per view its clip times, a colour bar) and an animated GIF.

PIL only (it comes with torchvision); the colormap is a built-in "jet" (blue -> cyan -> yellow -> red),
so no matplotlib is needed.
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from lfbtool._io.atomic import atomic_write, make_directory

__all__ = ["ALPHA", "Panel", "SheetLayout", "colour_bar", "jet", "overlay", "render_sheet", "sheet_layout",
           "write_gradcam_files"]

#: Weight of the heat map in the blend.
ALPHA = 0.5
LINE = 12  # pixels per text line (PIL's default bitmap font is 11 high)
HEADER_LINES = 3  # input name; top-1 label and score; the map's class and layer
COLUMNS = 8  # frames per row of a view's band
MIN_WIDTH = 320  # room for the header and caption text beside small clips
BAR_HEIGHT = 10
MARGIN = 4


@dataclass(frozen=True)
class Panel:
    """One explained view: uint8 clip ``[3, T, H, W]``, its map ``[T, H, W]`` in 0..1, a caption
    (which view, clip times, its score)."""

    clip: np.ndarray
    heat: np.ndarray
    caption: str


@dataclass(frozen=True)
class SheetLayout:
    """Where everything lies on the sheet: per panel the top-left corner of each frame tile, and the
    colour bar's box ``(x0, y0, x1, y1)`` (exclusive ends); 0 at ``x0``, 1 at ``x1 - 1``."""

    width: int
    height: int
    captions: list[int]  # y of each panel's caption line
    tiles: list[list[tuple[int, int]]]
    bar: tuple[int, int, int, int]


def sheet_layout(frames: list[int], height: int, width: int) -> SheetLayout:
    """The sheet of panels with ``frames[i]`` frames of ``height x width`` each: header, then per panel
    a caption line over its frames in rows of up to :data:`COLUMNS`, then the colour bar and its labels."""
    cols = min(max(frames), COLUMNS)
    sheet_width = max(cols * width, MIN_WIDTH)
    y = HEADER_LINES * LINE + MARGIN
    captions, tiles = [], []
    for count in frames:
        captions.append(y)
        y += LINE
        tiles.append([((i % COLUMNS) * width, y + (i // COLUMNS) * height) for i in range(count)])
        y += -(-count // COLUMNS) * height + MARGIN
    bar = (MARGIN, y, sheet_width - MARGIN, y + BAR_HEIGHT)
    return SheetLayout(sheet_width, y + BAR_HEIGHT + LINE + MARGIN, captions, tiles, bar)


def jet(values: np.ndarray) -> np.ndarray:
    """``[...]`` in 0..1 -> ``[..., 3]`` uint8 RGB: the piecewise-linear jet colormap."""
    v = np.clip(values, 0.0, 1.0)[..., None]
    r = np.clip(np.minimum(4 * v - 1.5, -4 * v + 4.5), 0, 1)
    g = np.clip(np.minimum(4 * v - 0.5, -4 * v + 3.5), 0, 1)
    b = np.clip(np.minimum(4 * v + 0.5, -4 * v + 2.5), 0, 1)
    return np.round(np.concatenate([r, g, b], axis=-1) * 255).astype(np.uint8)


def colour_bar(width: int, height: int = BAR_HEIGHT) -> np.ndarray:
    """uint8 ``[height, width, 3]``: jet from 0 (left column) to 1 (right column)."""
    return np.repeat(jet(np.linspace(0.0, 1.0, width))[None], height, axis=0)


def overlay(frames: np.ndarray, heat: np.ndarray, alpha: float = ALPHA) -> np.ndarray:
    """uint8 frames ``[T, H, W, 3]`` and a map ``[T, H, W]`` in 0..1 -> blended uint8 ``[T, H, W, 3]``."""
    mixed = (1 - alpha) * frames.astype(np.float32) + alpha * jet(heat).astype(np.float32)
    return np.clip(np.round(mixed), 0, 255).astype(np.uint8)


def blended(panel: Panel) -> np.ndarray:
    """The panel's frames ``[T, H, W, 3]`` with its map blended over them."""
    return overlay(np.ascontiguousarray(panel.clip.transpose(1, 2, 3, 0)), panel.heat)


def render_sheet(panels: list[Panel], header: list[str]) -> Image.Image:
    """The PNG sheet: ``header`` lines, each panel's caption and blended frames, the colour bar."""
    _, _, h, w = panels[0].clip.shape
    layout = sheet_layout([int(p.clip.shape[1]) for p in panels], h, w)
    sheet = Image.new("RGB", (layout.width, layout.height), "black")
    draw = ImageDraw.Draw(sheet)
    for line, text in enumerate(header[:HEADER_LINES]):
        draw.text((2, line * LINE), text, fill="white")
    for panel, y, tiles in zip(panels, layout.captions, layout.tiles, strict=True):
        draw.text((2, y), panel.caption, fill="white")
        for frame, corner in zip(blended(panel), tiles, strict=True):
            sheet.paste(Image.fromarray(frame), corner)
    x0, y0, x1, y1 = layout.bar
    sheet.paste(Image.fromarray(colour_bar(x1 - x0, y1 - y0)), (x0, y0))
    draw.text((x0, y1), "0", fill="white")
    draw.text((x1 - 6, y1), "1", fill="white")
    draw.text(((x0 + x1) // 2 - 40, y1), "Grad-CAM (0..1)", fill="white")
    return sheet


def write_gradcam_files(
    directory: str | os.PathLike[str], name: str, panels: list[Panel], header: list[str]
) -> list[Path]:
    """``DIR/<name>.gradcam.png`` (:func:`render_sheet`), ``.gif`` (the first panel's blended frames,
    the clip's size, 10 frames/s, looping) and ``.npy`` (the maps, float32 ``[views, T, H, W]``).

    Each file is written atomically.
    """
    directory = make_directory(Path(directory))
    images = [Image.fromarray(frame) for frame in blended(panels[0])]

    def png(handle: io.BufferedWriter) -> None:
        render_sheet(panels, header).save(handle, format="PNG")

    def gif(handle: io.BufferedWriter) -> None:
        images[0].save(handle, format="GIF", save_all=True, append_images=images[1:], duration=100, loop=0)

    def npy(handle: io.BufferedWriter) -> None:
        np.save(handle, np.stack([p.heat for p in panels]).astype(np.float32))

    return [
        atomic_write(directory / f"{name}.gradcam.png", png),
        atomic_write(directory / f"{name}.gradcam.gif", gif),
        atomic_write(directory / f"{name}.gradcam.npy", npy),
    ]
