"""Where this process runs: its rank under torchrun (from the environment) and its torch device."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from lfbtool.errors import LfbError

if TYPE_CHECKING:
    import torch


def is_main_process() -> bool:
    """True on rank 0 of a torchrun job, and in a plain process: the one that prints summaries."""
    return int(os.environ.get("RANK", "0")) == 0


def is_node_leader() -> bool:
    """True on local rank 0 of each node: an error all ranks share is printed once per node's log."""
    return int(os.environ.get("LOCAL_RANK", "0")) == 0


def local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", "0"))


def resolve_device(requested: str = "auto", rank: int | None = None) -> torch.device:
    """``auto``: ``cuda:LOCAL_RANK`` when CUDA is present, else cpu; an explicit device is checked.

    A device this machine cannot run (``cuda`` without CUDA, ``cuda:3`` on a 2-GPU node, a typo) is
    one LfbError, not a traceback from deep inside the first forward.
    """
    import torch

    index = local_rank() if rank is None else rank
    if requested == "auto":
        return torch.device("cuda", index) if torch.cuda.is_available() else torch.device("cpu")
    try:
        device = torch.device(requested)
    except (RuntimeError, ValueError) as error:
        raise LfbError(f"--device {requested!r} is not a device (auto, cpu, cuda, cuda:0, ...)") from error
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise LfbError(f"--device {requested}: CUDA is not available on this machine")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise LfbError(f"--device {requested}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    elif device.type != "cpu":
        raise LfbError(f"--device {requested}: only cpu and cuda devices are supported")
    return device
