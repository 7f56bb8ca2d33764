"""N vs N head: one tag per step, decoded independently (softmax) or jointly (linear-chain CRF).

    outputs    (B, T, D) backbone outputs
    mask       (B, T)    True at valid steps (a prefix of each row)
    targets    (B, T)    tag ids, IGNORE_INDEX (-100) at padding
    emissions  (B, T, C) per-step tag scores
    tags       (B, T)    decoded tag ids, IGNORE_INDEX at padding
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from rnnlab.dropout import Dropout
from rnnlab.errors import check_choice
from rnnlab.batch import IGNORE_INDEX
from rnnlab.heads.crf import LinearChainCRF

DECODERS = ("softmax", "crf")

#: (start (C,), transitions (C, C) [from, to], end (C,)) bool masks of the allowed tag sequences
Constraints = tuple[torch.Tensor, torch.Tensor, torch.Tensor]


class TaggingHead(nn.Module):
    """Dropout and a linear layer to tag scores, then a softmax or a CRF output layer.

    ``softmax``: per-token cross-entropy, each step decoded by argmax. ``crf``: the sentence's
    negative log-likelihood under a linear-chain CRF, Viterbi decoding; ``constraints`` forbid
    transitions that the tag scheme rules out (e.g. ``O -> I-PER`` under IOB2) in the CRF's
    training and decoding.
    Losses are means over valid tokens, so both decoders share one learning-rate scale.
    """

    def __init__(
        self,
        input_size: int,
        num_tags: int,
        decoder: str = "softmax",
        dropout: float = 0.0,
        constraints: Constraints | None = None,
    ) -> None:
        super().__init__()
        check_choice("model.decoder", decoder, DECODERS)
        self.decoder = decoder
        self.dropout = Dropout(dropout)
        self.output = nn.Linear(input_size, num_tags)
        self.crf = LinearChainCRF(num_tags, constraints) if decoder == "crf" else None

    def forward(self, outputs: torch.Tensor) -> torch.Tensor:
        """outputs (B, T, D) -> emissions (B, T, C)."""
        return self.output(self.dropout(outputs))

    def loss(self, emissions: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Mean loss per valid token: cross-entropy, or the CRF's summed sentence NLL / valid tokens."""
        if self.crf is None:
            return F.cross_entropy(emissions.transpose(1, 2), targets, ignore_index=IGNORE_INDEX)
        return self.crf(emissions, targets, mask, reduction="token_mean")

    def decode(self, emissions: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """emissions (B, T, C), mask (B, T) -> best tags (B, T), IGNORE_INDEX at padding."""
        if self.crf is None:
            return emissions.argmax(dim=-1).masked_fill(~mask, IGNORE_INDEX)
        return self.crf.decode(emissions, mask)
