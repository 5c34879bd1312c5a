"""Pictures of what went in: keyframe contact sheets with boxes (``detect --preview``, ``show``) and a
bank's per-video strips (``show``). Plain PNGs drawn with Pillow; see docs/reading.md.

Importing this package needs no torch; reading keyframe images does (the frame readers).
"""

from __future__ import annotations

from lfbtool.pictures.draw import TILE_SHORT_SIDE, Tile, check_output, ensure_directory, render_tile
from lfbtool.pictures.preview import PREVIEW_FRAMES, write_previews
from lfbtool.pictures.show import FrameOptions, Picture, show_bank
from lfbtool.pictures.strip import StripData, StripGeometry, draw_strip, strip_data

__all__ = ["PREVIEW_FRAMES", "TILE_SHORT_SIDE", "FrameOptions", "Picture", "StripData", "StripGeometry", "Tile",
           "check_output", "draw_strip", "ensure_directory", "render_tile", "show_bank", "strip_data",
           "write_previews"]
