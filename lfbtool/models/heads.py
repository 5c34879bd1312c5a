"""Classification heads of MMAction2 recognizers, with their checkpoint key names (``fc_cls``).

Each head splits into ``pool`` (feature map -> the pooled clip embedding ``[N, D]``, what
``recognize --features`` stores) and ``classify`` (embedding -> logits).
"""

from __future__ import annotations

from torch import Tensor, nn

__all__ = ["I3DHead"]


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
