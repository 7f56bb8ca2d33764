"""What a recurrence did at every step: the states and gate activations the diagnostics read.

A :class:`RecurrenceRecorder` is handed to the step-by-step (reference) recurrence, which reports
each layer and direction once it has run it. The states are the very tensors the recurrence fed
into its next step, so ``torch.autograd.grad(loss, record.states)`` is the full ∂loss/∂h_t: through
the outputs at t and through every later step.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from rnnlab.masking import reverse_padded


@dataclass
class DirectionRecord:
    """One layer and direction, in the order the recurrence read its input.

    states  T tensors (B, H): h_t after step t (past a sequence's end: its last state, frozen)
    gates   gate name -> (B, T, H) activations, e.g. ``forget``; empty for the vanilla RNN
    mask    (B, T) True at valid steps; the backward direction's steps are reversed within each
            sequence's length, so its valid steps also come first
    reverse True for the backward direction
    """

    states: list[torch.Tensor]
    gates: dict[str, torch.Tensor]
    mask: torch.Tensor
    reverse: bool

    @property
    def lengths(self) -> torch.Tensor:
        """(B,) valid steps per sequence."""
        return self.mask.sum(dim=1)

    def in_positions(self, values: torch.Tensor) -> torch.Tensor:
        """values (B, T, ...) in reading order -> (B, T, ...) by position in the sequence (the backward
        direction's step t of a sequence of length n is position n - 1 - t; padding stays last)."""
        return reverse_padded(values, self.lengths) if self.reverse else values


class RecurrenceRecorder:
    """Collects a :class:`DirectionRecord` per layer and direction, keyed ``l0``, ``l0_reverse``, ``l1``, ...

    Only the first run of a direction is kept, so a task that calls its backbone twice in one
    forward (none does today) is recorded on its first call.
    """

    def __init__(self) -> None:
        self.directions: dict[str, DirectionRecord] = {}

    def record(self, name: str, states: list[torch.Tensor], gates: dict[str, torch.Tensor], mask: torch.Tensor) -> None:
        """Called by the recurrence after running direction ``name`` (see :class:`DirectionRecord`)."""
        if name not in self.directions:
            self.directions[name] = DirectionRecord(states, gates, mask, name.endswith("_reverse"))

    def top_layer(self) -> list[DirectionRecord]:
        """The last layer's directions: forward, then backward when bidirectional."""
        if not self.directions:
            raise RuntimeError("nothing recorded: the backbone did not run inside recording()")
        last = max(int(name[1:].split("_")[0]) for name in self.directions)
        return [self.directions[name] for name in (f"l{last}", f"l{last}_reverse") if name in self.directions]
