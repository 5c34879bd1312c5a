"""``lfbtool show``: a PNG picture of a bank (per-video strips; with frames, keyframe tiles and boxes).

Registered by lfbtool/cli/__init__.py as ``app.command("show")(show_command)``. Without frames it
starts without torch; with frames the frame readers import it (docs/reading.md).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from lfbtool.cli.options import BankArgument
from lfbtool.runtime.console import stdout

_FRAMES = "Frames (default: as the bank's config records)"


def show_command(
    bank: BankArgument,
    output: Annotated[Path, typer.Option("--output", "-o", help="The picture, a .png file (replaced if it exists).")],
    video: Annotated[list[str] | None, typer.Option("--video", help="A video to draw (repeat for more; default: the first 8 of the bank).")] = None,
    frames_root: Annotated[Path | None, typer.Option(help="DIR/<video_id>/img_00001.jpg ...: draw keyframe tiles with the stored boxes.", rich_help_panel=_FRAMES)] = None,
    videos_root: Annotated[Path | None, typer.Option(help="DIR/<video_id>.<ext>: draw keyframe tiles with the stored boxes.", rich_help_panel=_FRAMES)] = None,
    tiles: Annotated[int, typer.Option(min=1, help="Keyframe tiles per video, evenly spread.", rich_help_panel=_FRAMES)] = 8,
    tile_size: Annotated[int, typer.Option(help="Short side of a tile in pixels (at least 256).", rich_help_panel=_FRAMES)] = 256,
    fps: Annotated[str | None, typer.Option(help="Frame rate (30, 30000/1001, auto); needed for banks imported from MMAction2.", rich_help_panel=_FRAMES)] = None,
    timestamp_start: Annotated[int | None, typer.Option(help="Second of the first frame; needed for imported banks.", rich_help_panel=_FRAMES)] = None,
    start_index: Annotated[int | None, typer.Option(help="Number of the first frame file (imported banks: 1).", rich_help_panel=_FRAMES)] = None,
    frame_template: Annotated[str | None, typer.Option(help="Frame file name template.", rich_help_panel=_FRAMES)] = None,
    video_ext: Annotated[str | None, typer.Option(help="Video file extension.", rich_help_panel=_FRAMES)] = None,
) -> None:
    """Draw a bank: persons per second and a similarity band per video; with frames, its boxes on keyframes."""
    from lfbtool.pictures.show import MAX_VIDEOS, FrameOptions, show_bank

    frames = FrameOptions(frames_root=frames_root, videos_root=videos_root, fps=fps, timestamp_start=timestamp_start,
                          start_index=start_index, frame_template=frame_template, video_ext=video_ext)
    picture = show_bank(bank, output, videos=video, frames=frames, tiles=tiles, tile_size=tile_size)
    width, height = picture.image.size
    drawn = len(picture.strips)
    note = f" (of {picture.videos_in_bank}; name others with --video)" if (
        not video and picture.videos_in_bank > MAX_VIDEOS) else ""
    stdout.print(f"wrote {output} ({width} x {height} px): {drawn} video{'s' if drawn != 1 else ''}{note}, "
                 f"{len(picture.tiles)} keyframe tiles", markup=False)
