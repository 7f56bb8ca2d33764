"""The one batch type that every task, data module and head shares."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

#: The target id at padded steps (cross-entropy's default ignore_index): padding contributes no
#: loss, and decoded tag paths carry it at padding too.
IGNORE_INDEX = -100


@dataclass
class Batch:
    """A padded batch of variable-length sequences.

    inputs   (B, T) token ids (long), or (B, T, F) real-valued features (float)
    lengths  (B,)   valid steps per example, every one >= 1
    mask     (B, T) True at valid steps
    targets  (B,) class ids | (B, T) tags | (B, T') target tokens | (B, H, F') horizon values;
             None when predicting
    extras   task-specific tensors, e.g. ``index`` (B,): position of each example in its dataset
    """

    inputs: torch.Tensor
    lengths: torch.Tensor
    mask: torch.Tensor
    targets: torch.Tensor | None = None
    extras: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return self.inputs.shape[0]
