"""The recognizer's training contract as MMAction2 0.x runners call it: losses, ``train_step``, ``val_step``.

Kept apart from the test path (``recognizers.py``): a user who only scores videos never needs it,
and the loss bookkeeping (``parse_losses``) is one idea with its own rules.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["parse_losses", "forward_train", "train_step", "val_step"]


def parse_losses(losses: Mapping[str, Any]) -> tuple[Tensor, dict[str, float]]:
    """MMAction2's ``_parse_losses``: the total loss and the logged values.

    Each entry is a tensor (its mean is logged) or a list of tensors (the sum of their means);
    anything else is a ``TypeError``. The loss is the sum of every entry whose name contains
    ``loss``; it stays local (it is what backward runs on). Logged values, ``loss`` included, are
    averaged across ranks when a process group is running, so every rank logs the same numbers.
    """
    log_vars: OrderedDict[str, Tensor] = OrderedDict()
    for name, value in losses.items():
        if isinstance(value, Tensor):
            log_vars[name] = value.mean()
        elif isinstance(value, (list, tuple)) and value and all(isinstance(v, Tensor) for v in value):
            log_vars[name] = sum(v.mean() for v in value)  # type: ignore[assignment]
        else:
            raise TypeError(f"{name} is not a tensor or list of tensors")
    terms = [value for name, value in log_vars.items() if "loss" in name]
    if not terms:
        raise ValueError(f"no entry whose name contains 'loss' among {list(log_vars)}")
    loss: Tensor = sum(terms)  # type: ignore[assignment]
    log_vars["loss"] = loss
    reduce = dist.is_available() and dist.is_initialized()
    logged: dict[str, float] = {}
    for name, value in log_vars.items():
        value = value.detach().clone().float()
        if reduce:
            dist.all_reduce(value.div_(dist.get_world_size()))
        logged[name] = value.item()
    return loss, logged


def forward_train(recognizer: nn.Module, imgs: Tensor, labels: Tensor) -> dict[str, Tensor]:
    """Cross-entropy of every view against its video's label, and top-1 accuracy (logged)."""
    num_segs = imgs.shape[1] if imgs.ndim == 6 else 1
    logits = recognizer(imgs.flatten(0, 1) if imgs.ndim == 6 else imgs)
    target = labels.reshape(-1).long().to(logits.device).repeat_interleave(num_segs)
    top1 = (logits.detach().argmax(dim=1) == target).float().mean()
    return {"loss_cls": F.cross_entropy(logits, target), "top1_acc": top1}


def train_step(recognizer: nn.Module, data_batch: Mapping[str, Tensor], optimizer: Any = None) -> dict[str, Any]:
    """MMAction2 0.x ``train_step``: ``{"loss", "log_vars", "num_samples"}``; the runner steps."""
    losses = forward_train(recognizer, data_batch["imgs"], data_batch["label"])
    loss, log_vars = parse_losses(losses)
    return {"loss": loss, "log_vars": log_vars, "num_samples": len(data_batch["imgs"])}


def val_step(recognizer: nn.Module, data_batch: Mapping[str, Tensor], optimizer: Any = None) -> dict[str, Any]:
    """Like :func:`train_step`, without building a graph."""
    with torch.no_grad():
        return train_step(recognizer, data_batch, optimizer)
