"""Person detection with a torchvision detection model: built without downloads, weights from a
checkpoint file (strict) or a named torchvision weight, COCO person boxes out, normalised to [0, 1].

The model runs as torchvision defines it: its own resize (each model's own ``min_size``/``max_size``
unless the user gives others: 320/640 for ``fasterrcnn_mobilenet_v3_large_320_fpn``, 800/1333 for
most; SSD models resize to a fixed square), its own post-processing. We keep label 1 (COCO
``person``) with score >= threshold, the first ``max_per_frame`` of them (torchvision returns them
by descending score).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from lfbtool.choices import did_you_mean
from lfbtool.errors import LfbError, SettingError
from lfbtool.models.checkpoint import checkpoint_sha256, load_strict, read_checkpoint
from lfbtool.settings import DEFAULT_DETECTOR as DEFAULT_DETECTOR  # re-exported: its one home is settings

PERSON_LABEL = 1  # COCO category id of "person" in torchvision's detection models


def detector_names() -> list[str]:
    """Every detection model torchvision registers (its own list, not ours)."""
    import torchvision
    from torchvision.models import detection

    return sorted(torchvision.models.list_models(module=detection))


@dataclass(frozen=True)
class DetectorSource:
    """Where a detector's weights come from and the input size it ran at; what the sidecar and the
    resume fingerprint record."""

    name: str
    min_size: int  # read off the built model (input_sizes), never restated here
    max_size: int
    checkpoint_sha256: str | None = None
    weights: str | None = None  # torchvision weights enum member, e.g. FasterRCNN_..._Weights.COCO_V1

    def record(self) -> dict[str, Any]:
        return {"detector": self.name, "detector_checkpoint_sha256": self.checkpoint_sha256,
                "detector_weights": self.weights, "min_size": self.min_size, "max_size": self.max_size}


def has_fixed_size(name: str) -> bool:
    """torchvision's SSD models resize every image to one fixed square (300 or 320); the others keep
    the aspect ratio between ``min_size`` and ``max_size``."""
    return name.startswith("ssd")


def build_detector(name: str, *, min_size: int | None = None, max_size: int | None = None) -> nn.Module:
    """A randomly initialised torchvision detector ``name`` (no weights downloaded), in eval mode.

    ``min_size``/``max_size`` None: the model's own resize, as torchvision defines that model;
    given: passed to torchvision's builder. SSD models have a fixed input size and refuse them.
    """
    names = detector_names()
    if name not in names:
        raise LfbError(f"unknown detector {name!r}{did_you_mean(name, names)} (torchvision has: {', '.join(names)})")
    sizes = {key: value for key, value in (("min_size", min_size), ("max_size", max_size)) if value is not None}
    if sizes and has_fixed_size(name):
        raise SettingError(f"detector_{next(iter(sizes))}",
                           f"does not apply to {name}: SSD models resize every image to their fixed input "
                           "size; leave {1} and {2} out", also=("detector_min_size", "detector_max_size"))
    import torchvision

    return torchvision.models.get_model(name, weights=None, weights_backbone=None, **sizes).eval()


def input_sizes(model: nn.Module) -> tuple[int, int]:
    """``(min_size, max_size)`` a built torchvision detector resizes to at inference, read off its
    transform (in eval mode it uses the last of its ``min_size`` choices; SSD: both its fixed side)."""
    transform = model.transform
    return int(transform.min_size[-1]), int(transform.max_size)


def load_detector(
    name: str,
    *,
    checkpoint: str | os.PathLike[str] | None = None,
    weights: str | None = None,
    min_size: int | None = None,
    max_size: int | None = None,
) -> tuple[nn.Module, DetectorSource]:
    """Build detector ``name`` (sizes as :func:`build_detector`) and load its weights: a checkpoint
    file (a state_dict or ``{"state_dict"/"model": ...}``, loaded strictly) or a torchvision weights
    name (``DEFAULT``, ``COCO_V1``, downloaded by torchvision, hash-checked). Exactly one of the two."""
    if (checkpoint is None) == (weights is None):
        raise SettingError("detector_checkpoint", "give the detector's weights: {0} FILE (offline) or {1} NAME "
                           "(e.g. DEFAULT, downloaded by torchvision), not both", also=("detector_weights",))
    model = build_detector(name, min_size=min_size, max_size=max_size)
    used = input_sizes(model)
    if checkpoint is not None:
        source = os.fspath(checkpoint)
        sha = checkpoint_sha256(source)
        state = read_checkpoint(source)
        record = DetectorSource(name, *used, checkpoint_sha256=sha)
    else:
        from lfbtool.models.weights import resolve_weights, weights_state_dict

        member = resolve_weights(name, weights)
        source = str(member)
        state = weights_state_dict(member, setting="detector_checkpoint")
        record = DetectorSource(name, *used, weights=str(member), checkpoint_sha256=_cached_sha256(member))
    load_strict(model, state, source=source, target=f"detector {name}")
    return model, record


def _cached_sha256(member: Any) -> str | None:
    """sha256 of torchvision's cached weights file (just downloaded or found by ``get_state_dict``)."""
    path = os.path.join(torch.hub.get_dir(), "checkpoints", os.path.basename(member.url))
    return checkpoint_sha256(path) if os.path.isfile(path) else None


def image_tensor(frame: Tensor) -> Tensor:
    """uint8 ``[H, W, 3]`` RGB -> float ``[3, H, W]`` in [0, 1], what torchvision detectors take."""
    return frame.permute(2, 0, 1).to(torch.float32).div_(255.0)


def person_boxes(output: dict[str, Tensor], height: int, width: int, *, score_threshold: float,
                 max_per_frame: int, removed: dict[str, int] | None = None) -> np.ndarray:
    """One image's torchvision output -> float32 ``[n, 5]``: normalised x1 y1 x2 y2 (clipped to
    [0, 1]) and score, persons scoring >= ``score_threshold``, the first ``max_per_frame``.
    ``removed``: counts added under ``detector_score_threshold`` and ``max_per_frame``, the persons
    each filter dropped."""
    persons = output["labels"] == PERSON_LABEL
    keep = persons & (output["scores"] >= score_threshold)
    if removed is not None:
        found, passed = int(persons.sum()), int(keep.sum())
        removed["detector_score_threshold"] = removed.get("detector_score_threshold", 0) + found - passed
        removed["max_per_frame"] = removed.get("max_per_frame", 0) + max(0, passed - max_per_frame)
    boxes = output["boxes"][keep][:max_per_frame].detach().to("cpu", torch.float32)
    scores = output["scores"][keep][:max_per_frame].detach().to("cpu", torch.float32)
    scale = torch.tensor([width, height, width, height], dtype=torch.float32)
    normalised = (boxes / scale).clamp_(0.0, 1.0)
    return torch.cat([normalised, scores[:, None]], dim=1).numpy().astype(np.float32).reshape(-1, 5)


@torch.inference_mode()
def detect_persons(model: nn.Module, frames: list[Tensor], device: torch.device, *, score_threshold: float,
                   max_per_frame: int, removed: dict[str, int] | None = None) -> list[np.ndarray]:
    """Person boxes ``[n, 5]`` of each uint8 ``[H, W, 3]`` frame (one forward for the list)."""
    images = [image_tensor(frame).to(device) for frame in frames]
    outputs = model(images)
    return [person_boxes(out, int(f.shape[0]), int(f.shape[1]), score_threshold=score_threshold,
                         max_per_frame=max_per_frame, removed=removed) for out, f in zip(outputs, frames, strict=True)]
