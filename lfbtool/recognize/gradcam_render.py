"""Grad-CAM pictures: the heat map blended over the clip's frames, as a PNG sheet and an animated GIF.

PIL only (it comes with torchvision); the colormap is a built-in "jet" (blue -> cyan -> yellow -> red),
so no matplotlib is needed.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from lfbtool._io.atomic import atomic_write, make_directory

__all__ = ["ALPHA", "jet", "overlay", "write_gradcam_files"]

#: Weight of the heat map in the blend.
ALPHA = 0.5
_CAPTION = 16  # pixels of the caption strip above the sheet
_COLUMNS = 8


def jet(values: np.ndarray) -> np.ndarray:
    """``[...]`` in 0..1 -> ``[..., 3]`` uint8 RGB: the piecewise-linear jet colormap."""
    v = np.clip(values, 0.0, 1.0)[..., None]
    r = np.clip(np.minimum(4 * v - 1.5, -4 * v + 4.5), 0, 1)
    g = np.clip(np.minimum(4 * v - 0.5, -4 * v + 3.5), 0, 1)
    b = np.clip(np.minimum(4 * v + 0.5, -4 * v + 2.5), 0, 1)
    return np.round(np.concatenate([r, g, b], axis=-1) * 255).astype(np.uint8)


def overlay(frames: np.ndarray, heat: np.ndarray, alpha: float = ALPHA) -> np.ndarray:
    """uint8 frames ``[T, H, W, 3]`` and a map ``[T, H, W]`` in 0..1 -> blended uint8 ``[T, H, W, 3]``."""
    mixed = (1 - alpha) * frames.astype(np.float32) + alpha * jet(heat).astype(np.float32)
    return np.clip(np.round(mixed), 0, 255).astype(np.uint8)


def _sheet(blended: np.ndarray, caption: str) -> Image.Image:
    t, h, w, _ = blended.shape
    cols = min(t, _COLUMNS)
    rows = -(-t // cols)
    sheet = Image.new("RGB", (cols * w, rows * h + _CAPTION), "black")
    for i, frame in enumerate(blended):
        sheet.paste(Image.fromarray(frame), ((i % cols) * w, _CAPTION + (i // cols) * h))
    ImageDraw.Draw(sheet).text((2, 2), caption, fill="white")
    return sheet


def write_gradcam_files(
    directory: str | os.PathLike[str], name: str, clip: np.ndarray, heat: np.ndarray, caption: str
) -> list[Path]:
    """``DIR/<name>.gradcam.png`` (frames in rows of 8 under a caption), ``.gif`` (one frame per clip
    frame, the clip's size, 10 frames/s, looping) and ``.npy`` (the map, float32 ``[T, H, W]``).

    ``clip``: uint8 ``[3, T, H, W]`` (the view the map explains); each file is written atomically.
    """
    directory = make_directory(Path(directory))
    blended = overlay(np.ascontiguousarray(clip.transpose(1, 2, 3, 0)), heat)
    images = [Image.fromarray(frame) for frame in blended]

    def png(handle: io.BufferedWriter) -> None:
        _sheet(blended, caption).save(handle, format="PNG")

    def gif(handle: io.BufferedWriter) -> None:
        images[0].save(handle, format="GIF", save_all=True, append_images=images[1:], duration=100, loop=0)

    def npy(handle: io.BufferedWriter) -> None:
        np.save(handle, heat.astype(np.float32))

    return [
        atomic_write(directory / f"{name}.gradcam.png", png),
        atomic_write(directory / f"{name}.gradcam.gif", gif),
        atomic_write(directory / f"{name}.gradcam.npy", npy),
    ]
