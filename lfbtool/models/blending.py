"""Mini-batch blending of MMAction2 (``MixupBlending``, ``CutmixBlending``): mix each clip with a
shuffled partner of the same batch and mix their one-hot labels by the same weight.

Draw order (what a fixed :class:`torch.Generator` reproduces): mixup draws lambda, then the partner
permutation; cutmix draws the permutation, then lambda, then the box centre (x, then y), as MMAction2
does. Lambda is ``Beta(alpha, alpha)``; with a generator it is drawn from a seed the generator gives
(``torch.distributions.Beta`` takes no generator), without one from torch's global RNG like MMAction2.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["BlendResult", "CutmixBlending", "MixupBlending", "one_hot_labels"]


@dataclass
class BlendResult:
    imgs: Tensor
    labels: Tensor  # [N, num_classes], rows sum to 1
    lam: float  # weight of each sample itself (cutmix: recomputed from the clipped box)
    partner: Tensor  # int64 [N]: sample i is mixed with sample partner[i]
    box: tuple[int, int, int, int] | None = None  # cutmix: x1, y1, x2, y2 (pasted from the partner)


def one_hot_labels(labels: Tensor, num_classes: int) -> Tensor:
    """Class indices ``[N]`` (or ``[N, 1]``) -> float one-hot ``[N, C]``; soft labels ``[N, C]`` as they are."""
    if labels.ndim == 2 and labels.shape[1] == num_classes and labels.is_floating_point():
        return labels
    return F.one_hot(labels.reshape(-1).long(), num_classes).float()


class _Blending:
    def __init__(self, num_classes: int, alpha: float = 0.2) -> None:
        if alpha <= 0:
            raise ValueError(f"blending alpha must be > 0, got {alpha}")
        self.num_classes = num_classes
        self.alpha = alpha

    def _lam(self, generator: torch.Generator | None) -> Tensor:
        beta = torch.distributions.Beta(torch.tensor(float(self.alpha)), torch.tensor(float(self.alpha)))
        if generator is None:
            return beta.sample()
        seed = int(torch.randint(0, 2**62, (1,), generator=generator))
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return beta.sample()

    def __call__(self, imgs: Tensor, labels: Tensor, generator: torch.Generator | None = None) -> BlendResult:
        return self.blend(imgs, one_hot_labels(labels, self.num_classes).to(imgs.device), generator)

    def blend(self, imgs: Tensor, labels: Tensor, generator: torch.Generator | None) -> BlendResult:
        raise NotImplementedError


class MixupBlending(_Blending):
    """``lam * x + (1 - lam) * x[partner]`` for clips and one-hot labels alike."""

    def blend(self, imgs: Tensor, labels: Tensor, generator: torch.Generator | None) -> BlendResult:
        lam = self._lam(generator)
        partner = torch.randperm(imgs.shape[0], generator=generator)
        mixed = lam * imgs + (1 - lam) * imgs[partner]
        return BlendResult(mixed, lam * labels + (1 - lam) * labels[partner], float(lam), partner)


def rand_bbox(height: int, width: int, lam: Tensor, generator: torch.Generator | None = None) -> tuple[int, ...]:
    """MMAction2 ``rand_bbox``: a box of sides ``int(side * sqrt(1 - lam))`` around a uniform centre,
    clipped to the frame: ``(x1, y1, x2, y2)``."""
    ratio = torch.sqrt(1.0 - lam)
    cut_w, cut_h = int(width * ratio), int(height * ratio)
    cx = int(torch.randint(width, (1,), generator=generator)[0])
    cy = int(torch.randint(height, (1,), generator=generator)[0])
    return (
        min(max(cx - cut_w // 2, 0), width), min(max(cy - cut_h // 2, 0), height),
        min(max(cx + cut_w // 2, 0), width), min(max(cy + cut_h // 2, 0), height),
    )


class CutmixBlending(_Blending):
    """Paste the partner's box (same box in every frame) into each clip; lambda = 1 - box area / frame area."""

    def blend(self, imgs: Tensor, labels: Tensor, generator: torch.Generator | None) -> BlendResult:
        partner = torch.randperm(imgs.shape[0], generator=generator)
        lam = self._lam(generator)
        height, width = int(imgs.shape[-2]), int(imgs.shape[-1])
        x1, y1, x2, y2 = rand_bbox(height, width, lam, generator)
        mixed = imgs.clone()
        mixed[..., y1:y2, x1:x2] = imgs[partner][..., y1:y2, x1:x2]
        kept = 1.0 - (x2 - x1) * (y2 - y1) / (width * height)
        return BlendResult(mixed, kept * labels + (1 - kept) * labels[partner], kept, partner, (x1, y1, x2, y2))
