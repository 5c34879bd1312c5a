"""``extract --proposals X`` from a ``lfbtool detect`` output: the settings that put a second on a frame
must be the ones the persons were detected with, or the features come from other frames than the boxes.

``detect`` writes them into its sidecar ``X.json`` (``X.pkl.json`` / ``X.csv.json``); extract reads it
when it is there and refuses, in one line naming the sidecar, every setting that disagrees, with the
option that fixes it. Proposals without a sidecar (MMAction2's, FAIR's) are taken as they are.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path
from typing import Any

from lfbtool.detect.outputs import sidecar_path, sidecar_settings
from lfbtool.errors import LfbError


def _fps_words(fps: Fraction | str) -> str:
    return "auto (each video's own rate)" if fps == "auto" else str(fps)


def _disagreements(ours: dict[str, Any], theirs: dict[str, Any]) -> list[str]:
    from lfbtool.data.sampling import parse_fps

    found: list[str] = []
    detected_fps = parse_fps(theirs["fps"])
    if detected_fps != ours["fps"]:
        found.append(f"fps: detect used {_fps_words(detected_fps)}, extract has --fps {ours['fps']} "
                     f"(pass --fps {detected_fps})")
    for name in ("timestamp_start", "start_index"):
        flag = f"--{name.replace('_', '-')}"
        if int(theirs[name]) != ours[name]:
            found.append(f"{name}: detect used {theirs[name]}, extract has {flag} {ours[name]} "
                         f"(pass {flag} {theirs[name]})")
    # every-second: the clip chose which seconds have a whole clip (annotated / proposals keys: it chose nothing)
    clip, detected_clip = (ours["clip_len"], ours["frame_interval"]), (int(theirs["clip_len"]), int(theirs["frame_interval"]))
    if theirs.get("keyframes") == "every-second" and clip != detected_clip:
        found.append(f"clip: detect chose the seconds with a whole clip of {detected_clip[0]} x {detected_clip[1]}, "
                     f"extract has --clip-len {clip[0]} --frame-interval {clip[1]} (pass --clip-len "
                     f"{detected_clip[0]} --frame-interval {detected_clip[1]}, or detect again with this clip)")
    return found


def check_against_detect(proposals: Path | None, *, fps: Fraction | str, timestamp_start: int, start_index: int,
                         clip_len: int, frame_interval: int) -> None:
    """LfbError when ``proposals`` has a detect sidecar whose frame placement disagrees with these
    settings of extract (``fps``: a Fraction or ``"auto"``)."""
    if proposals is None:
        return
    theirs = sidecar_settings(proposals)
    if theirs is None:
        return
    sidecar = sidecar_path(proposals)
    ours = {"fps": fps, "timestamp_start": timestamp_start, "start_index": start_index, "clip_len": clip_len,
            "frame_interval": frame_interval}
    try:
        found = _disagreements(ours, theirs)
    except (KeyError, TypeError, ValueError, LfbError) as error:
        raise LfbError(f"{sidecar}: not a sidecar written by lfbtool detect (bad or missing setting: {error}); "
                       "fix or remove it") from None
    if found:
        raise LfbError(f"{sidecar}: the boxes were detected on other frames than extract would read: "
                       + "; ".join(found))
