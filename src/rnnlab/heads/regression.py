"""Real-valued outputs over a horizon: a direct head (all steps at once from the encoder's summary)
and an autoregressive decoder (one step at a time, each prediction fed back as the next input).

    summary   (B, D)        the encoder's top-layer final states
    start     (B, K)        the last observed values of the K targets (the decoder's first input)
    targets   (B, H, K)     the true future values, for teacher forcing (training only)
    forecast  (B, H, K)
"""

from __future__ import annotations

import torch
from torch import nn

from rnnlab.dropout import Dropout
from rnnlab.heads.seq2seq import State


class DirectForecastHead(nn.Module):
    """N vs 1: one linear map from the summary to every horizon step and target, (B, D) -> (B, H, K)."""

    def __init__(self, input_size: int, horizon: int, num_targets: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.horizon = horizon
        self.num_targets = num_targets
        self.dropout = Dropout(dropout)
        self.projection = nn.Linear(input_size, horizon * num_targets)

    def forward(self, summary: torch.Tensor) -> torch.Tensor:
        return self.projection(self.dropout(summary)).view(-1, self.horizon, self.num_targets)


class AutoregressiveForecastDecoder(nn.Module):
    """A recurrent decoder over the target values: step t reads the value of step t - 1 (the last
    observation at t = 0) and emits step t's value.

    ``rnn``: a unidirectional recurrent backbone built with ``input_size = K``. Teacher forcing
    feeds the true previous value with probability ``teacher_forcing`` per row and step (training);
    otherwise, and always at inference, the decoder's own prediction, gradients flowing through it.
    """

    def __init__(self, rnn: nn.Module, num_targets: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.rnn = rnn
        self.dropout = Dropout(dropout)
        self.projection = nn.Linear(rnn.hidden_size, num_targets)

    def forward(
        self,
        initial: State,
        start: torch.Tensor,
        horizon: int,
        targets: torch.Tensor | None = None,
        teacher_forcing: float = 0.0,
    ) -> torch.Tensor:
        """initial state (L, B, H) [or (h, c)], start (B, K) -> forecast (B, H, K)."""
        state, previous = initial, start
        one = torch.ones(start.shape[0], dtype=torch.long)  # on the CPU, where the backbone reads lengths: no GPU wait
        steps = []
        for step in range(horizon):
            outputs, state = self.rnn(previous.unsqueeze(1), one, initial=state)  # (B, 1, H)
            value = self.projection(self.dropout(outputs[:, 0]))  # (B, K)
            steps.append(value)
            previous = value
            if targets is not None and teacher_forcing > 0.0:
                gold = torch.rand(value.shape[0], 1, device=value.device) < teacher_forcing
                previous = torch.where(gold, targets[:, step], value)
        return torch.stack(steps, dim=1)
