"""Accuracy of labelled recognize runs, as MMAction2 1.x's ``AccMetric`` computes it, and the results
pickle its ``tools/test.py --dump`` writes.

Metrics (numpy only, ``mmaction/evaluation/functional/accuracy.py``):

- ``acc/top1``, ``acc/top5``: ``top_k_accuracy``: a sample counts when its label is among the ``k``
  classes ``np.argsort(scores)[-k:]`` picks (ties: the higher class index first).
- ``acc/mean1``: ``mean_class_accuracy``: per class, hits / samples of that class, averaged over the
  classes that occur as a label *or as a prediction* (MMAction2's confusion matrix spans both; a class
  only ever predicted counts as 0).

With ``--average-clips none`` a sample's score is the mean of its per-view scores (MMAction2 cannot
evaluate unreduced scores). Failed inputs have no score and are left out; the summary says how many.

Dump (``mmengine.evaluator.DumpResults``: each ``ActionDataSample.to_dict()``, metainfo first, in
dataset order, ``pickle`` protocol 2)::

    {"img_shape": (crop, crop), "num_classes": len(pred_score),
     "gt_label": int64 [1] (-1 without labels), "pred_score": float32 [C] ([V, C] for none),
     "pred_label": int64 [1] ([V, 1] for none)}
"""

from __future__ import annotations

import os
import pickle
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from lfbtool._io.atomic import atomic_write
from lfbtool.errors import LfbError

__all__ = ["accuracy", "check_dump_path", "mean_class_accuracy", "top_k_accuracy", "write_dump"]


def top_k_accuracy(scores: np.ndarray, labels: Sequence[int], k: int) -> float:
    """Fraction of samples whose label is among their ``k`` best classes (MMAction2's ``top_k_accuracy``)."""
    best = np.argsort(scores, axis=1)[:, -k:][:, ::-1]
    return float(np.logical_or.reduce(best == np.asarray(labels)[:, None], axis=1).mean())


def mean_class_accuracy(scores: np.ndarray, labels: Sequence[int]) -> float:
    """MMAction2's ``mean_class_accuracy``: recall per class over labels and predictions together."""
    predicted = np.argmax(scores, axis=1)
    real = np.asarray(labels, dtype=np.int64)
    classes = np.unique(np.concatenate([predicted, real]))
    recalls = []
    for cls in classes:
        count = int((real == cls).sum())
        recalls.append(float(((real == cls) & (predicted == cls)).sum()) / count if count else 0.0)
    return float(np.mean(recalls))


def _sample_scores(record: Mapping[str, Any]) -> np.ndarray:
    scores = np.asarray(record["scores"], dtype=np.float32)
    return scores.mean(axis=0) if scores.ndim == 2 else scores


def accuracy(records: Sequence[Mapping[str, Any]]) -> dict[str, Any] | None:
    """``acc/top1``, ``acc/top5``, ``acc/mean1`` over the scored records that carry a ``label``, with
    ``labelled`` (records with a label) and ``evaluated`` (those scored); None without labels."""
    labelled = [r for r in records if r.get("label") is not None]
    scored = [r for r in labelled if r.get("error") is None]
    if not labelled:
        return None
    metrics: dict[str, Any] = {"labelled": len(labelled), "evaluated": len(scored)}
    if scored:
        scores = np.stack([_sample_scores(r) for r in scored])
        labels = [int(r["label"]) for r in scored]
        metrics.update({"acc/top1": top_k_accuracy(scores, labels, 1), "acc/top5": top_k_accuracy(scores, labels, 5),
                        "acc/mean1": mean_class_accuracy(scores, labels)})
    return metrics


def check_dump_path(path: Path) -> None:
    """MMAction2's rule: the dump is a ``.pkl`` / ``.pickle`` file."""
    if not str(path).endswith((".pkl", ".pickle")):
        raise LfbError(f"--dump {path}: the dump must be a .pkl or .pickle file (as MMAction2's tools/test.py)")


def write_dump(path: str | os.PathLike[str], records: Sequence[Mapping[str, Any]], crop_size: int) -> Path:
    """MMAction2's ``--dump`` pickle of ``records`` (in input order), atomically; every input must be scored."""
    import torch

    path = Path(path)
    failed = [r for r in records if r.get("error") is not None]
    if failed:
        raise LfbError(f"--dump {path}: not written, {len(failed)} input(s) failed (first {failed[0]['input']}); "
                       "MMAction2's dump has one entry per sample: fix or remove them and rerun with --resume")
    samples = []
    for record in records:
        score = torch.tensor(record["scores"], dtype=torch.float32)
        label = record.get("label")
        samples.append({
            "img_shape": (crop_size, crop_size),
            "num_classes": len(score),
            "gt_label": torch.tensor([-1 if label is None else int(label)], dtype=torch.int64),
            "pred_score": score,
            "pred_label": score.argmax(dim=-1, keepdim=True),
        })
    data = pickle.dumps(samples, protocol=2)
    return atomic_write(path, lambda handle: handle.write(data))
