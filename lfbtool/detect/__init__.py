"""``lfbtool detect``: person boxes at chosen seconds of each video -> a proposals file (.pkl / .csv).

:func:`run_detect` runs it (resumable, torchrun); :mod:`lfbtool.detect.outputs` reads and writes what
it produces. Names load on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from lfbtool import _lazy_names

if TYPE_CHECKING:
    from lfbtool.detect.outputs import Detections
    from lfbtool.detect.run import DetectConfig, DetectResult, detect_config, run_detect

__all__ = ["DetectConfig", "DetectResult", "Detections", "detect_config", "run_detect"]
__getattr__ = _lazy_names("lfbtool.detect", {
    "outputs": ("Detections",),
    "run": ("DetectConfig", "DetectResult", "detect_config", "run_detect"),
})
