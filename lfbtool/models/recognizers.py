"""Video recognizers with MMAction2's test-time contract: per-view scores, chunked views, clip averaging.

Three kinds share :class:`BaseRecognizer`:

- :class:`Recognizer3D`: an lfbtool backbone (``slowonly_r50``, ...) + a head; its ``state_dict`` is
  MMAction2's Recognizer3D layout (``backbone.*``, ``cls_head.fc_cls.*``).
- :class:`TorchvisionVideoClassifier`: a torchvision video model with its own head; torchvision keys.
- :class:`TSN2D`: a torchvision image model run TSN-style: every view is one frame.

Every recognizer takes raw pixels (uint8 or float on 0-255, ``[N, 3, T, H, W]``) and normalizes them
itself, as MMAction2 1.x's data preprocessor does, so callers never need to know the mean/std.
Training steps live in :mod:`lfbtool.models.training`; building by name in
:mod:`lfbtool.models.recognizer_factory`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lfbtool.choices import AverageClips
from lfbtool.errors import LfbError
from lfbtool.models import training
from lfbtool.models.heads import I3DHead
from lfbtool.models.normalization import Normalization, Normalize
from lfbtool.models.registry import TestDefaults
from lfbtool.runtime.precision import Precision, autocast, channels_last, prepare_model

__all__ = ["BaseRecognizer", "Recognizer3D", "TorchvisionVideoClassifier", "TSN2D", "average_clip"]


def average_clip(cls_scores: Tensor, num_segs: int, average_clips: AverageClips | str = "score") -> Tensor:
    """MMAction2 ``BaseHead.average_clip``: ``[B * num_segs, C]`` -> ``[B, C]``.

    ``score`` averages logits, ``prob`` averages softmax probabilities, ``none`` returns the per-view
    logits unreduced as ``[B, num_segs, C]``. Embeddings are averaged like ``score``.
    """
    mode = AverageClips.parse(average_clips, "--average-clips")
    if cls_scores.shape[0] % num_segs:
        raise ValueError(f"{cls_scores.shape[0]} scores do not split into views of {num_segs}")
    cls_scores = cls_scores.view(cls_scores.shape[0] // num_segs, num_segs, *cls_scores.shape[1:])
    if mode is AverageClips.none:
        return cls_scores
    if mode is AverageClips.prob:
        return F.softmax(cls_scores, dim=2).mean(dim=1)
    return cls_scores.mean(dim=1)


def check_max_testing_views(max_testing_views: int | None) -> int | None:
    """``max_testing_views`` is None (all views in one forward) or a positive count."""
    if max_testing_views is not None and max_testing_views < 1:
        raise LfbError(f"--max-testing-views must be >= 1, got {max_testing_views}")
    return max_testing_views


class BaseRecognizer(nn.Module):
    """Per-view classifier plus MMAction2's test path (``forward_test``) and train/val steps."""

    #: True for TSN-style image models: views are single frames (clip_len 1).
    is_2d: bool = False
    #: Compute precision of the per-view forward (``set_precision``); logits come back in fp32.
    precision: Precision = Precision.fp32
    #: The one clip length the model takes (a fixed position table, ``spec.clip_frames``); None: any.
    clip_frames: int | None = None

    def __init__(self, normalization: Normalization, num_classes: int, defaults: TestDefaults, name: str) -> None:
        super().__init__()
        self.normalize = Normalize(normalization)
        self.num_classes = num_classes
        self.defaults = defaults
        self.name = name

    # -- per view ---------------------------------------------------------------------------
    def classify(self, x: Tensor) -> Tensor:
        """Logits ``[N, num_classes]`` of normalized views ``[N, 3, T, H, W]``."""
        raise NotImplementedError

    def classifier_layer(self) -> nn.Module:
        """The last layer (linear or 1x1 conv): its input, averaged over any space/time left, is the clip
        embedding (the pooled feature the classifier reads)."""
        raise NotImplementedError

    def weights_module(self) -> nn.Module:
        """The module whose ``state_dict`` has the checkpoint layout this recognizer loads."""
        return self

    def forward(self, x: Tensor) -> Tensor:
        """Logits ``[N, num_classes]`` of raw-pixel views ``[N, 3, T, H, W]`` (0-255), in fp32."""
        if self.precision is Precision.fp32:
            return self.classify(self.normalize(x))
        with autocast(self.precision, x.device):
            logits = self.classify(channels_last(self.normalize(x), self.precision))
        return logits.float()

    def set_precision(self, precision: Precision | str) -> BaseRecognizer:
        """Run views in ``precision`` (checked against the device by the caller with ``check_precision``);
        bf16/fp16 also put the weights in channels-last memory format, where autocast pays."""
        self.precision = Precision.parse(precision, "--precision")
        prepare_model(self, self.precision)
        return self

    def forward_with_embeddings(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Logits and clip embeddings ``[N, D]`` of raw-pixel views, from one forward."""
        captured: list[Tensor] = []

        def keep_input(_module: nn.Module, inputs: tuple[Tensor, ...]) -> None:
            captured.append(inputs[0])

        handle = self.classifier_layer().register_forward_pre_hook(keep_input)
        try:
            logits = self(x)
        finally:
            handle.remove()
        pooled = captured[-1]
        if pooled.ndim > 2:
            pooled = pooled.mean(dim=tuple(range(2, pooled.ndim)))
        return logits, pooled

    def view_scores(self, views: Tensor, max_testing_views: int | None = None) -> Tensor:
        """Logits of every view, at most ``max_testing_views`` views per forward (MMAction2's
        ``test_cfg.max_testing_views``); chunks are concatenated in order."""
        device = self.normalize.mean.device
        chunk = check_max_testing_views(max_testing_views) or views.shape[0]
        if chunk >= views.shape[0]:
            return self(views.to(device, non_blocking=True))
        return torch.cat([self(part.to(device, non_blocking=True)) for part in views.split(chunk)], dim=0)

    def view_embeddings(self, views: Tensor, max_testing_views: int | None = None) -> tuple[Tensor, Tensor]:
        """Logits and clip embeddings of every view, chunked like :meth:`view_scores`."""
        device = self.normalize.mean.device
        chunk = check_max_testing_views(max_testing_views) or views.shape[0]
        parts = [self.forward_with_embeddings(part.to(device, non_blocking=True)) for part in views.split(chunk)]
        return torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])

    # -- test path --------------------------------------------------------------------------
    average_clip = staticmethod(average_clip)

    @torch.no_grad()
    def forward_test(
        self, imgs: Tensor, *, average_clips: AverageClips | str = "score", max_testing_views: int | None = None
    ) -> Tensor:
        """Scores of ``imgs [B, num_views, 3, T, H, W]`` (raw pixels), averaged per video."""
        if imgs.ndim == 5:
            imgs = imgs.unsqueeze(1)
        scores = self.view_scores(imgs.flatten(0, 1), max_testing_views)
        return average_clip(scores, imgs.shape[1], average_clips)

    # -- training (see lfbtool.models.training) ----------------------------------------------
    #: Mini-batch blending, ``aux_info`` and the loss of ``train_step`` (MMAction2's ``train_cfg``).
    train_cfg: training.TrainConfig | None = None

    def train_step(self, data_batch: Mapping[str, Tensor], optimizer: Any = None) -> dict[str, Any]:
        return training.train_step(self, data_batch, optimizer)

    def val_step(self, data_batch: Mapping[str, Tensor], optimizer: Any = None) -> dict[str, Any]:
        return training.val_step(self, data_batch, optimizer)


class Recognizer3D(BaseRecognizer):
    """MMAction2 ``Recognizer3D``: ``cls_head(backbone(x))``; keys ``backbone.*``, ``cls_head.fc_cls.*``."""

    def __init__(
        self,
        backbone: nn.Module,
        num_classes: int,
        *,
        head: nn.Module | None = None,
        normalization: Normalization | None = None,
        defaults: TestDefaults | None = None,
        dropout: float = 0.5,
        name: str | None = None,
    ) -> None:
        spec = getattr(backbone, "spec", None)
        if spec is None and (normalization is None or defaults is None):
            raise ValueError("a backbone without .spec needs normalization and defaults")
        super().__init__(
            normalization or spec.normalization, num_classes, defaults or spec.test_clip,
            name or (spec.name if spec is not None else "recognizer3d"),
        )
        self.backbone = backbone
        self.cls_head = head if head is not None else I3DHead(_channels(backbone), num_classes, dropout=dropout)

    def classify(self, x: Tensor) -> Tensor:
        return self.cls_head(self.backbone(x))

    def classifier_layer(self) -> nn.Module:
        return self.cls_head.fc_cls


class TorchvisionVideoClassifier(BaseRecognizer):
    """A torchvision video model (r3d_18, s3d, mvit, swin3d, ...) with its own head."""

    def __init__(self, model: nn.Module, num_classes: int, *, normalization: Normalization,
                 defaults: TestDefaults, name: str) -> None:
        super().__init__(normalization, num_classes, defaults, name)
        self.model = model

    def weights_module(self) -> nn.Module:
        return self.model

    def classify(self, x: Tensor) -> Tensor:
        return self.model(x)

    def classifier_layer(self) -> nn.Module:
        layers = [m for m in self.model.modules() if isinstance(m, (nn.Linear, nn.Conv2d, nn.Conv3d))]
        return layers[-1]


class TSN2D(TorchvisionVideoClassifier):
    """A torchvision image model used TSN-style: each view is one frame, its logits one view score.

    With ``score`` averaging this equals MMAction2 TSN's average consensus (the head is linear).
    """

    is_2d = True

    def classify(self, x: Tensor) -> Tensor:
        if x.shape[2] != 1:
            raise LfbError(f"{self.name} is a 2D model: views must be single frames (clip_len 1), got {x.shape[2]}")
        return self.model(x[:, :, 0])


def _channels(backbone: nn.Module) -> int:
    spec = getattr(backbone, "spec", None)
    if spec is not None:
        return int(spec.channels)
    channels = getattr(backbone, "out_channels", None) or getattr(backbone, "feat_dim", None)
    if channels is None:
        raise ValueError("backbone has neither .spec.channels nor .out_channels")
    return int(channels)
