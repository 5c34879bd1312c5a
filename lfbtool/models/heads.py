"""Classification heads of MMAction2 recognizers, with their checkpoint key names (``fc_cls``).

Each head splits into ``pool`` (feature map -> the pooled clip embedding ``[N, D]``, what
``recognize --features`` stores) and ``classify`` (embedding -> logits).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = ["I3DHead", "SlowFastHead", "TimeSformerHead"]


class I3DHead(nn.Module):
    """MMAction2 ``I3DHead``: global average pool, dropout, linear ``fc_cls``."""

    def __init__(self, in_channels: int, num_classes: int, dropout: float = 0.5, init_std: float = 0.01) -> None:
        super().__init__()
        self.avg_pool = nn.AdaptiveAvgPool3d((1, 1, 1))
        self.dropout = nn.Dropout(p=dropout) if dropout > 0 else nn.Identity()
        self.fc_cls = nn.Linear(in_channels, num_classes)
        nn.init.normal_(self.fc_cls.weight, std=init_std)
        nn.init.zeros_(self.fc_cls.bias)

    def pool(self, x: Tensor) -> Tensor:
        return self.avg_pool(x).flatten(1)

    def classify(self, pooled: Tensor) -> Tensor:
        return self.fc_cls(self.dropout(pooled))

    def forward(self, x: Tensor) -> Tensor:
        return self.classify(self.pool(x))


class SlowFastHead(nn.Module):
    """MMAction2 ``SlowFastHead``: average-pool each pathway to 1x1x1, concatenate **fast first**
    (``torch.cat((x_fast, x_slow))`` in MMAction2), dropout, ``fc_cls``.

    Checkpoint keys: ``cls_head.fc_cls.weight`` [num_classes, 256 + 2048] and ``.bias``.
    """

    def __init__(self, num_classes: int, in_channels: int = 2304, dropout_ratio: float = 0.5) -> None:
        super().__init__()
        self.avg_pool = nn.AdaptiveAvgPool3d((1, 1, 1))
        self.dropout = nn.Dropout(p=dropout_ratio) if dropout_ratio else None
        self.fc_cls = nn.Linear(in_channels, num_classes)

    def pool(self, x: tuple[Tensor, Tensor]) -> Tensor:
        x_slow, x_fast = x
        return torch.cat((self.avg_pool(x_fast), self.avg_pool(x_slow)), dim=1).flatten(1)

    def classify(self, pooled: Tensor) -> Tensor:
        return self.fc_cls(pooled if self.dropout is None else self.dropout(pooled))

    def forward(self, x: tuple[Tensor, Tensor]) -> Tensor:
        return self.classify(self.pool(x))


class TimeSformerHead(nn.Module):
    """MMAction2 ``TimeSformerHead`` (VideoMAE recognizers): the backbone already pooled (``fc_norm`` of the
    token mean), so ``pool`` is the identity; dropout (0 in the configs) and ``fc_cls``."""

    def __init__(self, num_classes: int, in_channels: int, dropout_ratio: float = 0.0, init_std: float = 0.02) -> None:
        super().__init__()
        self.dropout = nn.Dropout(p=dropout_ratio) if dropout_ratio else None
        self.fc_cls = nn.Linear(in_channels, num_classes)
        nn.init.trunc_normal_(self.fc_cls.weight, std=init_std)
        nn.init.zeros_(self.fc_cls.bias)

    def pool(self, x: Tensor) -> Tensor:
        return x

    def classify(self, pooled: Tensor) -> Tensor:
        return self.fc_cls(pooled if self.dropout is None else self.dropout(pooled))

    def forward(self, x: Tensor) -> Tensor:
        return self.classify(self.pool(x))
