"""``lfbtool extract``: keyframes -> clips -> backbone -> RoI features -> per-rank segments -> one bank.

:func:`run_extract` runs it (one process, or every rank under torchrun); :class:`ExtractConfig` and
:func:`build_config` are its flat options, :func:`settings_of` parses them once into the frozen
:class:`~lfbtool.settings.ExtractSettings`. Names load on first use: the segment helpers that ``lfbtool
merge`` needs import no torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from lfbtool import _lazy_names

if TYPE_CHECKING:
    from lfbtool.extract.config import ExtractConfig, build_config, settings_of
    from lfbtool.extract.run import ExtractResult, run_extract

__all__ = ["ExtractConfig", "ExtractResult", "build_config", "run_extract", "settings_of"]
__getattr__ = _lazy_names("lfbtool.extract", {
    "config": ("ExtractConfig", "build_config", "settings_of"),
    "run": ("ExtractResult", "run_extract"),
})
