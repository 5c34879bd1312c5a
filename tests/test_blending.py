"""Mixup / cutmix against a hand-computed reference with a fixed generator; train_step with blending
and aux_info."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from lfbtool.models.blending import CutmixBlending, MixupBlending
from lfbtool.models.training import TrainConfig, cross_entropy, train_step, val_step


def beta_draw(generator: torch.Generator, alpha: float) -> float:
    """The documented lambda: a seed from the generator, then Beta(alpha, alpha) under that seed."""
    seed = int(torch.randint(0, 2**62, (1,), generator=generator))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return float(torch.distributions.Beta(torch.tensor(alpha), torch.tensor(alpha)).sample())


def batch(n: int = 4, classes: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    torch.manual_seed(5)
    return torch.rand(n, 2, 3, 2, 12, 10) * 255, torch.tensor([0, 2, 1, 2])[:n]


def test_mixup_equals_the_hand_computation():
    imgs, labels = batch()
    result = MixupBlending(3, alpha=0.4)(imgs, labels, torch.Generator().manual_seed(11))
    replay = torch.Generator().manual_seed(11)
    lam = beta_draw(replay, 0.4)
    partner = torch.randperm(4, generator=replay)
    assert result.lam == pytest.approx(lam, abs=0) and torch.equal(result.partner, partner)
    assert sorted(partner.tolist()) == [0, 1, 2, 3]
    for i in range(4):
        j = int(partner[i])
        expected = torch.tensor(lam) * imgs[i] + (1 - torch.tensor(lam)) * imgs[j]
        torch.testing.assert_close(result.imgs[i], expected, rtol=0, atol=1e-4)
        soft = torch.zeros(3)
        soft[labels[i]] += lam
        soft[labels[j]] += 1 - lam
        torch.testing.assert_close(result.labels[i], soft)
    torch.testing.assert_close(result.labels.sum(1), torch.ones(4))
    again = MixupBlending(3, alpha=0.4)(imgs, labels, torch.Generator().manual_seed(11))
    assert torch.equal(again.imgs, result.imgs)


def test_cutmix_equals_the_hand_computation():
    imgs, labels = batch()
    seen = set()
    for seed in range(6):
        result = CutmixBlending(3, alpha=1.0)(imgs, labels, torch.Generator().manual_seed(seed))
        replay = torch.Generator().manual_seed(seed)
        partner = torch.randperm(4, generator=replay)
        lam = beta_draw(replay, 1.0)
        cut_w, cut_h = int(10 * math.sqrt(1 - lam)), int(12 * math.sqrt(1 - lam))
        cx = int(torch.randint(10, (1,), generator=replay))
        cy = int(torch.randint(12, (1,), generator=replay))
        x1, x2 = max(cx - cut_w // 2, 0), min(cx + cut_w // 2, 10)
        y1, y2 = max(cy - cut_h // 2, 0), min(cy + cut_h // 2, 12)
        assert torch.equal(result.partner, partner) and result.box == (x1, y1, x2, y2)
        kept = 1 - (x2 - x1) * (y2 - y1) / 120
        assert result.lam == pytest.approx(kept)
        for i in range(4):
            j = int(partner[i])
            expected = imgs[i].clone()
            for y in range(12):
                for x in range(10):
                    if y1 <= y < y2 and x1 <= x < x2:
                        expected[..., y, x] = imgs[j][..., y, x]
            assert torch.equal(result.imgs[i], expected)
            soft = torch.zeros(3)
            soft[labels[i]] += kept
            soft[labels[j]] += 1 - kept
            torch.testing.assert_close(result.labels[i], soft)
        torch.testing.assert_close(result.labels.sum(1), torch.ones(4))
        seen.add((x1, y1, x2, y2))
    assert len(seen) > 1  # the generator moves the box


class Probe(nn.Module):
    """Logits = a linear map of the mean pixel per channel (enough to check the loss wiring)."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(3, 3)
        self.train_cfg: TrainConfig | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x.mean(dim=(2, 3, 4)) / 255)


def test_train_step_blends_and_passes_aux_info_to_the_loss():
    imgs, labels = batch()
    torch.manual_seed(0)
    model = Probe()
    weights = torch.tensor([1.0, 2.0, 0.5])
    seen: dict[str, torch.Tensor] = {}

    def loss(logits, target, *, weight=None):
        seen["weight"] = weight
        return cross_entropy(logits, target)

    model.train_cfg = TrainConfig(blending=MixupBlending(3, alpha=0.4), aux_info=("weight",), loss=loss,
                                  generator=torch.Generator().manual_seed(11))
    out = train_step(model, {"imgs": imgs, "label": labels, "weight": weights})
    assert torch.equal(seen["weight"], weights)
    blended = MixupBlending(3, alpha=0.4)(imgs, labels, torch.Generator().manual_seed(11))
    logits = model(blended.imgs.flatten(0, 1))
    target = blended.labels.repeat_interleave(2, dim=0)
    expected = -(target * F.log_softmax(logits, 1)).sum(1).mean()
    torch.testing.assert_close(out["loss"], expected)
    assert "top1_acc" not in out["log_vars"]  # soft labels: no accuracy, as MMAction2's head
    plain = val_step(model, {"imgs": imgs, "label": labels, "weight": weights})  # validation does not blend
    torch.testing.assert_close(plain["loss"], F.cross_entropy(model(imgs.flatten(0, 1)), labels.repeat_interleave(2)))
    with pytest.raises(KeyError, match="weight"):
        train_step(model, {"imgs": imgs, "label": labels})
