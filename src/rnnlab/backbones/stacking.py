"""Stacked, optionally bidirectional recurrence over a padded batch, one direction at a time."""

from __future__ import annotations

from collections.abc import Callable

import torch

from rnnlab.dropout import dropout as apply_dropout
from rnnlab.masking import reverse_padded

State = tuple[torch.Tensor, ...]  # (h,) or, for the LSTM, (h, c); each (B, H)
#: (layer input (B, T, in), parameter name suffix such as "l0" or "l1_reverse", initial state or None
#:   for zeros) -> (outputs (B, T, H) zero at padding, state at each sequence's last valid step)
DirectionRunner = Callable[[torch.Tensor, str, "State | None"], tuple[torch.Tensor, State]]


def run_stacked(
    x: torch.Tensor,
    lengths: torch.Tensor,
    num_layers: int,
    num_directions: int,
    dropout: float,
    training: bool,
    run_direction: DirectionRunner,
    initial: State | None = None,
) -> tuple[torch.Tensor, State]:
    """x (B, T, F), lengths (B,) -> outputs (B, T, H * dirs), final states each (L * dirs, B, H).

    ``initial``: None (zeros) or the starting states, each (L * dirs, B, H) in the same layout.

    Each direction runs left to right; the backward one on each sequence reversed within its own
    length, so it starts at the last valid token, never at padding. Dropout acts between layers,
    as in torch.nn. Final states are stacked layer-major, direction-minor, as in torch.nn.
    """
    finals: list[State] = []
    for layer in range(num_layers):
        if layer > 0:
            x = apply_dropout(x, dropout, training)
        outputs = []
        for direction, suffix in enumerate(("", "_reverse")[:num_directions]):
            layer_input = reverse_padded(x, lengths) if suffix else x
            start = None if initial is None else tuple(part[layer * num_directions + direction] for part in initial)
            out, state = run_direction(layer_input, f"l{layer}{suffix}", start)
            outputs.append(reverse_padded(out, lengths) if suffix else out)
            finals.append(state)
        x = torch.cat(outputs, dim=2) if num_directions > 1 else outputs[0]  # (B, T, H * dirs)
    return x, tuple(torch.stack(parts) for parts in zip(*finals))


def as_state(initial: torch.Tensor | State | None) -> State | None:
    """torch.nn's h_0 or (h_0, c_0), each (L * dirs, B, H) -> a State tuple; None stays None."""
    if initial is None or isinstance(initial, tuple):
        return initial
    return (initial,)
