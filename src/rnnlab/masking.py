"""Tensor helpers for padded batches. Data-free: the bottom layer every other layer may use."""

from __future__ import annotations

import torch


def lengths_to_mask(lengths: torch.Tensor, max_len: int | None = None) -> torch.Tensor:
    """lengths (B,) -> mask (B, T), True at valid steps; T = max_len or lengths.max()."""
    max_len = int(lengths.max()) if max_len is None else max_len
    steps = torch.arange(max_len, device=lengths.device)
    return steps.unsqueeze(0) < lengths.unsqueeze(1)


def reverse_padded(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Reverse each sequence within its own length, leaving padding in place.

    x (B, T, ...) , lengths (B,) -> (B, T, ...): row b becomes x[b, len_b-1], ..., x[b, 0], padding.
    Applying it twice gives back x.
    """
    batch, steps = x.shape[0], x.shape[1]
    t = torch.arange(steps, device=x.device).unsqueeze(0).expand(batch, steps)
    lens = lengths.to(x.device, non_blocking=True).unsqueeze(1)
    index = torch.where(t < lens, lens - 1 - t, t)  # (B, T)
    index = index.view(batch, steps, *([1] * (x.dim() - 2))).expand_as(x)
    return x.gather(1, index)
