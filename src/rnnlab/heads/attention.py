"""Attention of decoder states over encoder outputs, padding masked out.

    query    (B, Tq, Hq)  decoder states (Tq = 1 while searching, the whole target when teacher forcing)
    memory   (B, S, D)    encoder outputs
    mask     (B, S)       True at valid source steps (every row has at least one)
    context  (B, Tq, D)   the weights' average of the memory
    weights  (B, Tq, S)   each row sums to 1 over the valid steps; exactly 0 at padding

Scores (Luong et al. 2015; Bahdanau et al. 2015):
``dot``        q · m                      (needs Hq == D)
``general``    q · (W m)
``additive``   v · tanh(W_q q + W_m m)
The memory-side terms (W m, W_m m) do not depend on the query: :meth:`Attention.keys` computes
them once per source batch, and every decoding step reuses them.
"""

from __future__ import annotations

import torch
from torch import nn

from rnnlab.errors import UserError, check_choice

ATTENTIONS: tuple[str, ...] = ("none", "dot", "general", "additive")


class Attention(nn.Module):
    """Scores ``dot`` | ``general`` | ``additive`` of queries (size ``query_size``) against a memory
    (size ``memory_size``); ``hidden_size`` is the additive score's inner size."""

    def __init__(self, kind: str, query_size: int, memory_size: int, hidden_size: int | None = None) -> None:
        super().__init__()
        check_choice("model.attention", kind, ATTENTIONS[1:])
        if kind == "dot" and query_size != memory_size:
            raise UserError(
                f"model.attention=dot compares decoder states (size {query_size}) with encoder outputs "
                f"(size {memory_size}) directly, so the sizes must match; use model.attention=general or "
                "additive, or make model.decoder.hidden_size equal the encoder's output size "
                "(hidden_size x 2 when bidirectional)"
            )
        self.kind = kind
        if kind == "general":
            self.memory_projection = nn.Linear(memory_size, query_size, bias=False)
        elif kind == "additive":
            hidden_size = hidden_size or query_size
            self.memory_projection = nn.Linear(memory_size, hidden_size, bias=False)
            self.query_projection = nn.Linear(query_size, hidden_size, bias=True)
            self.score = nn.Linear(hidden_size, 1, bias=False)

    def keys(self, memory: torch.Tensor) -> torch.Tensor:
        """memory (B, S, D) -> the query-independent part of the scores: (B, S, D) for dot, (B, S, Hq)
        for general, (B, S, hidden_size) for additive."""
        if self.kind == "dot":
            return memory
        return self.memory_projection(memory)

    def forward(
        self, query: torch.Tensor, keys: torch.Tensor, memory: torch.Tensor, mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """query (B, Tq, Hq), keys from :meth:`keys`, memory (B, S, D), mask (B, S) -> context (B, Tq, D), weights (B, Tq, S)."""
        if self.kind == "additive":
            hidden = torch.tanh(self.query_projection(query).unsqueeze(2) + keys.unsqueeze(1))  # (B, Tq, S, A)
            scores = self.score(hidden).squeeze(3)  # (B, Tq, S)
        else:
            scores = torch.bmm(query, keys.transpose(1, 2))  # (B, Tq, S)
        # -inf at padding: exp gives exact zeros, so padded memory cannot leak into the context.
        scores = scores.masked_fill(~mask.unsqueeze(1), float("-inf"))
        weights = torch.softmax(scores, dim=2)
        return torch.bmm(weights, memory), weights
