"""lfbtool: Long-Term Feature Banks for video action detection, and a recognizer's test path.

The public names load on first use (``from lfbtool import FeatureBank``), so ``import lfbtool`` costs
nothing and the commands that need no model never import torch. Every package that re-exports names
does it the same way, through :func:`_lazy_names`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from importlib import import_module
from typing import TYPE_CHECKING

__version__ = "0.1.0"

if TYPE_CHECKING:
    from lfbtool.bank.reader import FeatureBank
    from lfbtool.recognize.embeddings import read_embeddings
    from lfbtool.recognize.gradcam import gradcam


def _lazy_names(package: str, homes: Mapping[str, Sequence[str]]) -> Callable[[str], object]:
    """A module ``__getattr__`` that imports ``package.<module>`` when one of its names is first used;
    ``homes`` maps a submodule to the names it provides (the package's ``__all__`` lists them too)."""
    module_of = {name: module for module, names in homes.items() for name in names}

    def __getattr__(name: str) -> object:
        module = module_of.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(import_module(f"{package}.{module}"), name)

    return __getattr__


__all__ = ["FeatureBank", "__version__", "gradcam", "read_embeddings"]
__getattr__ = _lazy_names("lfbtool", {
    "bank.reader": ("FeatureBank",),
    "recognize.embeddings": ("read_embeddings",),
    "recognize.gradcam": ("gradcam",),
})
