"""The recognizer's training contract as MMAction2 0.x runners call it: losses, ``train_step``, ``val_step``.

Kept apart from the test path (``recognizers.py``): a user who only scores videos never needs it,
and the loss bookkeeping (``parse_losses``) is one idea with its own rules. ``TrainConfig`` is
MMAction2's ``train_cfg``: mini-batch blending (mixup / cutmix, :mod:`lfbtool.models.blending`) and
``aux_info`` (extra tensors of the batch handed to the loss).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["TrainConfig", "cross_entropy", "parse_losses", "forward_train", "train_step", "val_step"]


def cross_entropy(logits: Tensor, target: Tensor, **kwargs: Any) -> Tensor:
    """MMAction2 ``CrossEntropyLoss``: class indices -> ``F.cross_entropy``; soft labels ``[N, C]``
    (blending) -> ``mean(-sum(target * log_softmax(logits)))``; extra tensors go to ``F.cross_entropy``."""
    if target.shape == logits.shape and target.is_floating_point():
        return -(target * F.log_softmax(logits, dim=1)).sum(dim=1).mean()
    return F.cross_entropy(logits, target, **kwargs)


@dataclass
class TrainConfig:
    """``blending``: a callable ``(imgs, labels, generator) -> BlendResult`` (MixupBlending, ...);
    ``aux_info``: names of batch entries passed to ``loss`` as keyword arguments;
    ``generator``: makes blending reproducible."""

    blending: Callable[..., Any] | None = None
    aux_info: tuple[str, ...] = ()
    loss: Callable[..., Tensor] = cross_entropy
    generator: torch.Generator | None = None


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


def forward_train(
    recognizer: nn.Module, imgs: Tensor, labels: Tensor, loss: Callable[..., Tensor] = cross_entropy, **aux: Tensor
) -> dict[str, Tensor]:
    """The loss of every view against its video's label (indices or soft labels), extra batch tensors
    passed on to ``loss``; top-1 accuracy is logged for index labels only (as MMAction2's head)."""
    num_segs = imgs.shape[1] if imgs.ndim == 6 else 1
    logits = recognizer(imgs.flatten(0, 1) if imgs.ndim == 6 else imgs)
    soft = labels.ndim == 2 and labels.shape[1] == logits.shape[1] and labels.is_floating_point()
    target = (labels if soft else labels.reshape(-1).long()).to(logits.device).repeat_interleave(num_segs, dim=0)
    losses = {"loss_cls": loss(logits, target, **aux)}
    if not soft:
        losses["top1_acc"] = (logits.detach().argmax(dim=1) == target).float().mean()
    return losses


def train_step(recognizer: nn.Module, data_batch: Mapping[str, Tensor], optimizer: Any = None,
               blend: bool = True) -> dict[str, Any]:
    """MMAction2 0.x ``train_step``: ``{"loss", "log_vars", "num_samples"}``; the runner steps.

    With ``recognizer.train_cfg`` set: the batch is blended first (``blend``) and the entries named in
    ``aux_info`` are handed to the loss; a missing one is a ``KeyError`` naming it.
    """
    cfg: TrainConfig = getattr(recognizer, "train_cfg", None) or TrainConfig()
    imgs, labels = data_batch["imgs"], data_batch["label"]
    missing = [name for name in cfg.aux_info if name not in data_batch]
    if missing:
        raise KeyError(f"aux_info names {missing} but the batch has only {sorted(data_batch)}")
    aux = {name: data_batch[name] for name in cfg.aux_info}
    if blend and cfg.blending is not None:
        blended = cfg.blending(imgs, labels, cfg.generator)
        imgs, labels = blended.imgs, blended.labels
    losses = forward_train(recognizer, imgs, labels, cfg.loss, **aux)
    loss, log_vars = parse_losses(losses)
    return {"loss": loss, "log_vars": log_vars, "num_samples": len(data_batch["imgs"])}


def val_step(recognizer: nn.Module, data_batch: Mapping[str, Tensor], optimizer: Any = None) -> dict[str, Any]:
    """Like :func:`train_step`, without building a graph and without blending (a validation loss of
    mixed clips says nothing about the model)."""
    with torch.no_grad():
        return train_step(recognizer, data_batch, optimizer, blend=False)
