"""lfbtool: Long-Term Feature Banks for video action detection, and a recognizer's test path."""

from typing import TYPE_CHECKING

__version__ = "0.1.0"

if TYPE_CHECKING:
    from lfbtool.bank.reader import FeatureBank
    from lfbtool.embeddings import read_embeddings
    from lfbtool.grad_cam import gradcam

__all__ = ["FeatureBank", "__version__", "gradcam", "read_embeddings"]


def __getattr__(name: str) -> object:
    """``lfbtool.FeatureBank``, ``lfbtool.gradcam``, ``lfbtool.read_embeddings`` without importing torch and h5py when ``lfbtool`` is imported."""
    if name == "FeatureBank":
        from lfbtool.bank.reader import FeatureBank

        return FeatureBank
    if name == "gradcam":
        from lfbtool.grad_cam import gradcam

        return gradcam
    if name == "read_embeddings":
        from lfbtool.embeddings import read_embeddings

        return read_embeddings
    raise AttributeError(f"module 'lfbtool' has no attribute {name!r}")
