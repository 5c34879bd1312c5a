"""``lfbtool recognize``: a recognizer's test path (views, clip averaging) over a test set, with result
records, resume, torchrun, clip embeddings and Grad-CAM pictures.

:func:`recognize` scores inputs one by one (a library loop); :func:`run_recognize` runs a whole test
set with its output files. Names load on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from lfbtool import _lazy_names

if TYPE_CHECKING:
    from lfbtool.recognize.embeddings import Embeddings, read_embeddings
    from lfbtool.recognize.gradcam import compute_gradcam, gradcam
    from lfbtool.recognize.job import RecognizeJob, RunSummary, run_recognize, run_settings
    from lfbtool.recognize.labels import KINETICS400, load_labels, top_k
    from lfbtool.recognize.lists import InputList, expand_inputs, read_annotations
    from lfbtool.recognize.scoring import (
        RecognizeOptions,
        TestSettings,
        VideoResult,
        recognize,
        resolve_settings,
    )

__all__ = [
    "KINETICS400", "Embeddings", "InputList", "RecognizeJob", "RecognizeOptions", "RunSummary", "TestSettings", "VideoResult",
    "compute_gradcam", "expand_inputs", "gradcam", "load_labels", "read_annotations", "read_embeddings", "recognize",
    "resolve_settings",
    "run_recognize", "run_settings", "top_k",
]
__getattr__ = _lazy_names("lfbtool.recognize", {
    "embeddings": ("Embeddings", "read_embeddings"),
    "gradcam": ("compute_gradcam", "gradcam"),
    "lists": ("InputList", "expand_inputs", "read_annotations"),
    "job": ("RecognizeJob", "RunSummary", "run_recognize", "run_settings"),
    "labels": ("KINETICS400", "load_labels", "top_k"),
    "scoring": ("RecognizeOptions", "TestSettings", "VideoResult", "recognize", "resolve_settings"),
})
