"""An encoder for one fixed feature vector per example (1 vs N: e.g. an image -> a word), with the
recurrent backbone's interface, so the seq2seq decoder reads it like any encoder.

    inputs   (B, 1, F) one step of F real-valued features (a length-1 sequence)
    lengths  (B,)      all 1
    outputs  (B, 1, H) the MLP's output: a one-step memory for attention
    final    (1, B, H) the same vector as a one-layer, one-direction state, for the bridge
"""

from __future__ import annotations

import torch
from torch import nn

from rnnlab.dropout import Dropout
from rnnlab.errors import UserError


class VectorEncoder(nn.Module):
    """``num_layers`` Linear -> tanh -> dropout layers of width ``hidden_size``."""

    cell = "mlp"
    num_directions = 1

    def __init__(self, input_size: int, hidden_size: int = 128, num_layers: int = 2, dropout: float = 0.0) -> None:
        super().__init__()
        if input_size < 1 or hidden_size < 1 or num_layers < 1:
            raise UserError(
                "model.backbone (mlp) needs input_size, hidden_size and num_layers >= 1; "
                f"got {input_size}, {hidden_size}, {num_layers}"
            )
        if not 0.0 <= dropout < 1.0:
            raise UserError(f"model.backbone.dropout must be in [0, 1); got {dropout}")
        layers: list[nn.Module] = []
        for layer in range(num_layers):
            layers += [nn.Linear(input_size if layer == 0 else hidden_size, hidden_size), nn.Tanh(), Dropout(dropout)]
        self.mlp = nn.Sequential(*layers)
        self.hidden_size = hidden_size
        self.output_size = hidden_size
        self.state_size = hidden_size
        self.embedding = None

    def forward(
        self, inputs: torch.Tensor, lengths: torch.Tensor, features: None = None, initial: None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """inputs (B, 1, F), lengths (B,) -> outputs (B, 1, H), final (1, B, H)."""
        if inputs.dim() != 3 or inputs.shape[1] != 1:
            raise UserError(
                "model/backbone=mlp encodes one feature vector per example; the data gives sequences of "
                f"shape {tuple(inputs.shape)}: use a recurrent backbone (rnn, lstm, gru)"
            )
        encoded = self.mlp(inputs.float())  # (B, 1, H)
        return encoded, encoded.transpose(0, 1)
