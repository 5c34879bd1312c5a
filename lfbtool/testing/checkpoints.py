"""Random-weight checkpoints in MMAction2 layout, for the demo and the tests (no weights can be downloaded).

Batch-norm statistics are calibrated on a random clip (one cumulative train-mode pass), so a deep
random network gives features of sensible magnitude instead of overflowing fp16.
"""

from __future__ import annotations

from pathlib import Path

import torch

from lfbtool.models import create_backbone


def random_backbone_state(backbone: str = "slowonly_r50", *, seed: int = 0,
                          calibration_shape: tuple[int, ...] = (2, 3, 4, 64, 64)) -> dict[str, torch.Tensor]:
    torch.manual_seed(seed)
    model = create_backbone(backbone)
    for module in model.modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            module.reset_running_stats()
            module.momentum = None  # cumulative average: one pass sets the statistics of that batch
    model.train()
    n, c, t, h, w = calibration_shape  # a clip at least as long as the trunk accepts (SlowFast: 8)
    with torch.no_grad():
        model(torch.randn(n, c, max(t, model.spec.min_frames), h, w))
    model.eval()
    return {k: v.clone() for k, v in model.state_dict().items()}


def save_mmaction_checkpoint(path: str | Path, backbone_state: dict[str, torch.Tensor], *,
                             extra: dict[str, torch.Tensor] | None = None) -> Path:
    """Save ``{"meta": ..., "state_dict": {"backbone.*": ..., **extra}}`` as MMAction2 does."""
    state = {f"backbone.{k}": v for k, v in backbone_state.items()}
    state.update(extra or {})
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"meta": {"lfbtool": "random weights for tests and the demo"}, "state_dict": state}, path)
    return path


def make_random_detector_checkpoint(path: str | Path, *, backbone: str = "slowonly_r50", seed: int = 0,
                                    num_classes: int = 81) -> Path:
    """A FastRCNN-like AVA detector checkpoint: the backbone plus a bbox head the extractor ignores."""
    state = random_backbone_state(backbone, seed=seed)
    channels = create_backbone(backbone).spec.channels
    generator = torch.Generator().manual_seed(seed + 1)
    head = {
        "roi_head.bbox_head.fc_cls.weight": torch.randn(num_classes, channels, generator=generator) * 0.01,
        "roi_head.bbox_head.fc_cls.bias": torch.zeros(num_classes),
    }
    return save_mmaction_checkpoint(path, state, extra=head)


def damp_residual_branches(model: torch.nn.Module, gamma: float = 0.3) -> torch.nn.Module:
    """Scale the last BatchNorm of every bottleneck's residual branch by ``gamma`` (in place).

    Trained ResNets have small residual branches; random ones with unit-gamma BN are chaotic: rounding
    only the input to bf16 precision moves slowonly_r50's features to cosine 0.95. Damped, reduced
    precision error becomes measurable as it would be on trained weights.
    """
    with torch.no_grad():
        for block in model.modules():
            last = getattr(getattr(block, "conv3", None), "bn", None)
            if isinstance(last, torch.nn.modules.batchnorm._BatchNorm):
                last.weight.mul_(gamma)
                last.bias.mul_(gamma)
    return model


def make_random_person_detector(path: str | Path, *, name: str = "fasterrcnn_mobilenet_v3_large_320_fpn",
                                seed: int = 0, person_boost: float = 6.0) -> Path:
    """A random-weight torchvision detector whose person logit is raised by ``person_boost``, so random
    boxes score ~0.8 as persons (tests and the demo have no COCO weights)."""
    import torchvision

    torch.manual_seed(seed)
    model = torchvision.models.get_model(name, weights=None, weights_backbone=None)
    if hasattr(model, "roi_heads"):
        with torch.no_grad():
            model.roi_heads.box_predictor.cls_score.bias[1] += person_boost
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), path)
    return path


def random_recognizer_state(backbone: str = "slowonly_r50", *, num_classes: int, seed: int = 0,
                            ) -> dict[str, torch.Tensor]:
    """A random-weight recognizer's state dict in MMAction2's Recognizer3D layout, with non-trivial BN
    statistics (means in [-0.1, 0.1], variances in [0.5, 1.5]) so every layer matters in a test."""
    from lfbtool.models.recognizer_factory import build_recognizer

    torch.manual_seed(seed)
    recognizer = build_recognizer(backbone, num_classes=num_classes).recognizer
    for module in recognizer.modules():
        if isinstance(module, torch.nn.BatchNorm3d):
            module.running_mean.uniform_(-0.1, 0.1)
            module.running_var.uniform_(0.5, 1.5)
    return {k: v.clone() for k, v in recognizer.state_dict().items()}
