"""Which views ``recognize --gradcam`` explains (``--gradcam-clips``), and the pictures of them.

A *view* is what the recognizer scores: for 3D models crop ``k`` of clip ``c``, index ``k * num_clips
+ c`` (MMAction2's crop-major order, as ``--average-clips none`` lists them); for 2D (TSN) models the
unit Grad-CAM explains is one crop with all its segments (the segments are its time axis), so the
indices are crops. ``--gradcam-clips``:

- ``top`` (default): the view scoring highest on the explained class (logits for ``score`` and
  ``none``, per-view softmax for ``prob``, as ``--average-clips`` averages them; for 2D the crop with
  the highest mean over its segments);
- ``all``: every view, in order;
- ``0,4,8``: those views, in the order given.

The chosen views are decoded again from the input (decoding is deterministic, so they are the
pixels that were scored); each gets its own map of the explained class (``--gradcam-class``, default
the input's top-1 after averaging).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from lfbtool.choices import AverageClips
from lfbtool.data.frames import VideoFile, close_source
from lfbtool.errors import LfbError
from lfbtool.models.recognizers import BaseRecognizer
from lfbtool.recognize.gradcam import compute_gradcam
from lfbtool.recognize.gradcam_render import Panel, write_gradcam_files
from lfbtool.recognize.inputs import decode_clips, open_input
from lfbtool.recognize.labels import top_k

if TYPE_CHECKING:
    from lfbtool.recognize.job import RecognizeJob
    from lfbtool.recognize.scoring import TestSettings, VideoResult

__all__ = ["choose_views", "parse_gradcam_clips", "write_gradcam"]

Selection = str | list[int]  # "top", "all", or indices


def _units(settings: TestSettings, is_2d: bool) -> int:
    return settings.num_crops if is_2d else settings.views_per_video


def parse_gradcam_clips(text: str, settings: TestSettings, is_2d: bool) -> Selection:
    """``top``, ``all`` or comma-separated view indices (crops for 2D models), checked against the views."""
    text = text.strip()
    if text in ("top", "all"):
        return text
    units = _units(settings, is_2d)
    kind = (f"crops are 0..{units - 1} (2D models: one picture per crop)" if is_2d else
            f"views are 0..{units - 1} ({settings.num_clips} clips x {settings.num_crops} crops, crop-major)")
    try:
        indices = [int(part) for part in text.split(",")]
    except ValueError:
        raise LfbError(f"--gradcam-clips {text!r}: give top, all or view indices like 0,3 ({kind})") from None
    bad = [i for i in indices if not 0 <= i < units]
    if bad:
        raise LfbError(f"--gradcam-clips {text!r}: no view {bad[0]}; {kind}")
    if len(set(indices)) != len(indices):
        raise LfbError(f"--gradcam-clips {text!r}: a view is named twice")
    return indices


def choose_views(selection: Selection, view_scores: torch.Tensor, target: int, settings: TestSettings,
                 is_2d: bool) -> list[int]:
    """The views (crops for 2D) to draw for ``target``, from per-view logits ``[views, C]``."""
    if isinstance(selection, list):
        return selection
    units = _units(settings, is_2d)
    if selection == "all":
        return list(range(units))
    per_view = view_scores.float()
    if settings.average_clips is AverageClips.prob:
        per_view = per_view.softmax(dim=-1)
    value = per_view[:, target]
    if is_2d:  # crop k holds views k * num_clips .. (k + 1) * num_clips - 1
        value = value.view(settings.num_crops, settings.num_clips).mean(dim=1)
    return [int(value.argmax())]


def _times(numbers: np.ndarray, rate: Fraction | None, start_index: int) -> str:
    first, last = int(numbers.min()), int(numbers.max())
    if rate is None:
        return f"frames {first}-{last}"
    return f"{float((first - start_index) / rate):.2f}-{float((last - start_index + 1) / rate):.2f} s"


def write_gradcam(recognizer: BaseRecognizer, result: VideoResult, job: RecognizeJob, settings: TestSettings,
                  info: Mapping[str, Any], names: Sequence[str] | None, listed: int | None) -> dict[str, Any]:
    """Grad-CAM of the chosen views of one scored input: files in ``job.gradcam_dir``; the record's entry."""
    assert result.scores is not None and result.view_scores is not None and result.plan is not None
    assert job.gradcam_dir is not None
    is_2d, plan = recognizer.is_2d, result.plan
    (top_class, top_score), = top_k(result.scores, 1)
    target = job.gradcam_class if job.gradcam_class is not None else top_class
    if not 0 <= target < recognizer.num_classes:
        raise LfbError(f"--gradcam-class {target}: the model has {recognizer.num_classes} classes")
    chosen = choose_views(parse_gradcam_clips(job.gradcam_clips, settings, is_2d), result.view_scores, target,
                          settings, is_2d)
    source = open_input(Path(result.input), settings, listed)
    panels, layer = [], str(info["gradcam_layer"])
    try:
        rate = source.read_frame_rate() if isinstance(source, VideoFile) else None
        for unit in chosen:
            if is_2d:  # every segment of crop ``unit``: [num_clips, 3, 1, H, W] -> [3, num_clips, H, W]
                clip = decode_clips(source, plan, settings, range(plan.num_clips))[unit][:, :, 0].transpose(0, 1)
                numbers, what = plan.numbers[:, 0], f"crop {unit}"
                score = float(result.view_scores[unit * plan.num_clips:(unit + 1) * plan.num_clips, target].mean())
            else:
                crop, index = divmod(unit, plan.num_clips)
                clip = decode_clips(source, plan, settings, range(index, index + 1))[crop, 0]
                numbers, what = plan.numbers[index], f"view {unit} (clip {index}, crop {crop})"
                score = float(result.view_scores[unit, target])
            cam = compute_gradcam(recognizer, clip, target_class=target, layer=layer)
            times = _times(numbers, rate, settings.start_index)
            panels.append(Panel(clip.numpy(), cam.map.numpy(), f"{what}, {times}, score {score:.3f}"))
            layer = cam.layer
    finally:
        close_source(source)
    label = names[top_class] if names is not None else f"class {top_class}"
    explained = names[target] if names is not None else f"class {target}"
    header = [Path(result.input).name, f"top-1: {label} ({top_score:.3f}, average {settings.average_clips})",
              f"map of {explained} at {layer}, {len(chosen)} {'crop' if is_2d else 'view'}(s)"]
    files = write_gradcam_files(job.gradcam_dir, Path(result.input).name, panels, header)
    return {"class": target, "layer": layer, "views": chosen, "files": [str(f) for f in files]}
