"""Class names of a recognizer's scores and the top-k ranking that the tables and records show."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from torch import Tensor

from lfbtool.errors import LfbError
from lfbtool.recognize.lists import read_text_lines

KINETICS400 = "kinetics400"


def load_labels(
    labels: str | None, num_classes: int, categories: Sequence[str] | None = None
) -> list[str] | None:
    """Class names: a file with one name per line (its line count must equal ``num_classes``), the
    word ``kinetics400`` for torchvision's Kinetics-400 names, else the weights' categories."""
    if labels is None:
        return list(categories) if categories is not None else None
    if labels == KINETICS400 and not Path(labels).exists():
        from torchvision.models.video import R3D_18_Weights

        names = list(R3D_18_Weights.KINETICS400_V1.meta["categories"])
        source = "the kinetics400 label set"
    else:
        names = read_text_lines(Path(labels), "labels file")  # a byte order mark at the start dropped
        while names and not names[-1].strip():
            names.pop()
        names = [name.strip() for name in names]
        source = labels
    if len(names) != num_classes:
        raise LfbError(
            f"{source}: {len(names)} labels but the model has {num_classes} classes (one label per line)"
        )
    return names


def top_k(scores: Tensor, k: int) -> list[tuple[int, float]]:
    """``(class index, score)`` of the ``k`` highest scores (per-view scores are averaged first)."""
    if scores.ndim == 2:
        scores = scores.mean(dim=0)
    values, indices = scores.topk(min(k, scores.shape[-1]))
    return [(int(i), float(v)) for i, v in zip(indices, values, strict=True)]
