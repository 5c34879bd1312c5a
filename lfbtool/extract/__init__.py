"""``lfbtool extract``: keyframes -> clips -> backbone -> RoI features -> per-rank segments -> one bank.

:func:`run_extract` runs it (one process, or every rank under torchrun); :class:`ExtractConfig` and
:func:`build_config` are its settings. Names load on first use: the segment helpers that ``lfbtool
merge`` needs import no torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from lfbtool import _lazy_names

if TYPE_CHECKING:
    from lfbtool.extract.config import ExtractConfig, build_config
    from lfbtool.extract.run import ExtractResult, run_extract

__all__ = ["ExtractConfig", "ExtractResult", "build_config", "run_extract"]
__getattr__ = _lazy_names("lfbtool.extract", {
    "config": ("ExtractConfig", "build_config"),
    "run": ("ExtractResult", "run_extract"),
})
