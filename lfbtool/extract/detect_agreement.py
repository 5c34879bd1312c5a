"""``extract --proposals X`` from a ``lfbtool detect`` output: the settings that put a second on a frame
must be the ones the persons were detected with, or the features come from other frames than the boxes.

``detect`` writes them into its sidecar ``X.json`` (``X.pkl.json`` / ``X.csv.json``); extract reads it
when it is there and refuses, in one line naming the sidecar, every setting that disagrees, with the
option that fixes it. Proposals without a sidecar (MMAction2's, FAIR's) are taken as they are.
"""

from __future__ import annotations

from fractions import Fraction
from typing import Any

from lfbtool.detect.outputs import sidecar_path, sidecar_settings
from lfbtool.errors import LfbError
from lfbtool.extract.config import ExtractConfig


def _fps_words(fps: Fraction | str) -> str:
    return "auto (each video's own rate)" if fps == "auto" else str(fps)


def _disagreements(config: ExtractConfig, theirs: dict[str, Any]) -> list[str]:
    from lfbtool.data.sampling import parse_fps

    found: list[str] = []
    detected_fps = parse_fps(theirs["fps"])
    if detected_fps != config.fps:
        found.append(f"fps: detect used {_fps_words(detected_fps)}, extract has --fps {config.fps} "
                     f"(pass --fps {detected_fps})")
    for name in ("timestamp_start", "start_index"):
        flag = f"--{name.replace('_', '-')}"
        if int(theirs[name]) != getattr(config, name):
            found.append(f"{name}: detect used {theirs[name]}, extract has {flag} {getattr(config, name)} "
                         f"(pass {flag} {theirs[name]})")
    # every-second: the clip chose which seconds have a whole clip (annotated / proposals keys: it chose nothing)
    clip, detected_clip = (config.clip_len, config.frame_interval), (int(theirs["clip_len"]), int(theirs["frame_interval"]))
    if theirs.get("keyframes") == "every-second" and clip != detected_clip:
        found.append(f"clip: detect chose the seconds with a whole clip of {detected_clip[0]} x {detected_clip[1]}, "
                     f"extract has --clip-len {clip[0]} --frame-interval {clip[1]} (pass --clip-len "
                     f"{detected_clip[0]} --frame-interval {detected_clip[1]}, or detect again with this clip)")
    return found


def check_against_detect(config: ExtractConfig) -> None:
    """LfbError when ``config.proposals`` has a detect sidecar whose frame placement disagrees."""
    if config.proposals is None:
        return
    theirs = sidecar_settings(config.proposals)
    if theirs is None:
        return
    sidecar = sidecar_path(config.proposals)
    try:
        found = _disagreements(config, theirs)
    except (KeyError, TypeError, ValueError, LfbError) as error:
        raise LfbError(f"{sidecar}: not a sidecar written by lfbtool detect (bad or missing setting: {error}); "
                       "fix or remove it") from None
    if found:
        raise LfbError(f"{sidecar}: the boxes were detected on other frames than extract would read: "
                       + "; ".join(found))
