"""N vs 1 head: pooled sequence vector -> class logits."""

from __future__ import annotations

import torch
from torch import nn

from rnnlab.dropout import Dropout
from rnnlab.heads.pooling import SequencePooling


class ClassificationHead(nn.Module):
    """Pool encoder outputs (B, T, D) over valid steps, then dropout and a linear layer -> logits (B, C)."""

    def __init__(
        self, input_size: int, num_classes: int, pooling: str = "last", num_directions: int = 1, dropout: float = 0.0
    ) -> None:
        super().__init__()
        self.pooling = SequencePooling(pooling, input_size, num_directions)
        self.dropout = Dropout(dropout)
        self.output = nn.Linear(input_size, num_classes)

    def forward(self, outputs: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """outputs (B, T, D), mask (B, T) -> logits (B, C)."""
        return self.output(self.dropout(self.pooling(outputs, mask)))
