"""Run under ``torchrun --nproc_per_node=2`` (gloo): parse_losses / train_step average logs across ranks.

Each rank writes ``OUT/rank{r}.json`` with its local losses and the logged (averaged) values; the
test in test_recognizer.py checks them against the mean it computes from the local ones.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn

from lfbtool.models.normalization import Normalization
from lfbtool.models.recognizers import Recognizer3D
from lfbtool.models.registry import MMACTION_K400_TEST
from lfbtool.models.training import parse_losses


class TinyBackbone(nn.Module):
    """A user backbone: ``out_channels`` is all Recognizer3D needs to size its head."""

    out_channels = 8

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv3d(3, self.out_channels, kernel_size=3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.conv(x))


def main(out_dir: str) -> None:
    dist.init_process_group("gloo")
    rank = dist.get_rank()
    fixed = {
        "loss_cls": torch.tensor([rank + 1.0, rank + 3.0]),
        "loss_aux": [torch.tensor(float(rank)), torch.tensor(1.0)],
        "acc": torch.tensor(10.0 * rank),
    }
    fixed_loss, fixed_log_vars = parse_losses(fixed)

    torch.manual_seed(0)  # same weights on both ranks
    model = Recognizer3D(
        TinyBackbone(), 5, normalization=Normalization((128.0,) * 3, (64.0,) * 3, 255), defaults=MMACTION_K400_TEST
    )
    torch.manual_seed(100 + rank)  # different data per rank
    batch = {
        "imgs": torch.randint(0, 256, (2, 3, 2, 8, 8), dtype=torch.uint8),
        "label": torch.tensor([rank, 4]),
    }
    out = model.train_step(batch, optimizer=None)
    result = {
        "fixed_local_loss": fixed_loss.item(),
        "fixed_log_vars": fixed_log_vars,
        "local_loss": out["loss"].item(),
        "log_vars": out["log_vars"],
        "num_samples": out["num_samples"],
    }
    (Path(out_dir) / f"rank{rank}.json").write_text(json.dumps(result))
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1])
