"""Padding-aware pooling: per-step encoder outputs (B, T, D) -> one vector per sequence (B, D)."""

from __future__ import annotations

import torch
from torch import nn

from rnnlab.errors import check_choice

POOLINGS = ("last", "mean", "max", "attention")


class SequencePooling(nn.Module):
    """Reduce ``outputs`` (B, T, D) with ``mask`` (B, T) to (B, D); padded steps never contribute.

    - ``last``: the state at the last valid step. For a bidirectional encoder (D = 2H) the
      forward half is taken at the last valid step and the backward half at step 0, where
      the backward pass ends.
    - ``mean`` / ``max``: over valid steps only.
    - ``attention``: softmax(v^T tanh(W h_t)) over valid steps, weighted sum of h_t.
    """

    def __init__(self, method: str, input_size: int, num_directions: int = 1) -> None:
        super().__init__()
        check_choice("model.pooling", method, POOLINGS)
        self.method = method
        self.num_directions = num_directions
        self.scorer = (
            nn.Sequential(nn.Linear(input_size, input_size), nn.Tanh(), nn.Linear(input_size, 1, bias=False))
            if method == "attention"
            else None
        )

    def forward(self, outputs: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """outputs (B, T, D), mask (B, T) -> (B, D)."""
        if self.method == "last":
            return self._last(outputs, mask)
        valid = mask.unsqueeze(-1)  # (B, T, 1)
        if self.method == "mean":
            summed = outputs.masked_fill(~valid, 0.0).sum(dim=1)
            return summed / valid.sum(dim=1).clamp(min=1).to(outputs.dtype)
        if self.method == "max":
            return outputs.masked_fill(~valid, torch.finfo(outputs.dtype).min).max(dim=1).values
        outputs = outputs.masked_fill(~valid, 0.0)  # zero weight times inf/NaN padding would still be NaN
        scores = self.scorer(outputs).squeeze(-1).masked_fill(~mask, float("-inf"))  # (B, T)
        weights = torch.softmax(scores, dim=1)
        return torch.bmm(weights.unsqueeze(1), outputs).squeeze(1)

    def _last(self, outputs: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        last_index = mask.sum(dim=1) - 1  # (B,)
        rows = torch.arange(outputs.shape[0], device=outputs.device)
        at_last = outputs[rows, last_index]  # (B, D)
        if self.num_directions == 1:
            return at_last
        hidden = outputs.shape[-1] // 2
        return torch.cat([at_last[:, :hidden], outputs[:, 0, hidden:]], dim=-1)
