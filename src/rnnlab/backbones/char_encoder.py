"""Character-level word representations: a BiLSTM/BiGRU over each word's characters.

The classic remedy for rare and unseen words (Lample et al. 2016; Ma & Hovy 2016): a word that
maps to ``<unk>`` in the word vocabulary still has its spelling, prefixes and suffixes.

    chars         (B, T, W) character ids per token, 0-padded (W = longest word in the batch)
    char_lengths  (B, T)    characters per token; >= 1 at valid tokens, 0 at padded tokens
    mask          (B, T)    True at valid tokens
    output        (B, T, 2 * hidden_size): the forward direction's state after a word's last
                  character and the backward one's after its first; exact zeros at padded tokens
"""

from __future__ import annotations

import torch
from torch import nn

from rnnlab.backbones.recurrent import RecurrentBackbone
from rnnlab.dropout import Dropout
from rnnlab.errors import UserError, check_choice

CHAR_CELLS = ("lstm", "gru")


class CharWordEncoder(nn.Module):
    """Encodes every valid token's characters with a bidirectional recurrent layer.

    Only valid tokens are encoded (padded tokens cost nothing), and within a word the recurrent
    backbone respects its character length, so neither level of padding changes the result.
    """

    def __init__(
        self,
        num_chars: int,
        cell: str = "lstm",
        hidden_size: int = 25,
        embedding_dim: int = 25,
        dropout: float = 0.0,
        impl: str = "auto",
        padding_idx: int = 0,
    ) -> None:
        super().__init__()
        check_choice("model.char_encoder.cell", cell, CHAR_CELLS)
        if not 0.0 <= dropout < 1.0:
            raise UserError(f"model.char_encoder.dropout must be in [0, 1); got {dropout}")
        self.encoder = RecurrentBackbone(
            cell=cell,
            hidden_size=hidden_size,
            bidirectional=True,
            impl=impl,
            embedding_dim=embedding_dim,
            vocab_size=num_chars,
            padding_idx=padding_idx,
        )
        self.dropout = Dropout(dropout)
        self.output_size = 2 * hidden_size

    def forward(self, chars: torch.Tensor, char_lengths: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """chars (B, T, W), char_lengths (B, T), mask (B, T) -> (B, T, 2H), zeros at padded tokens.

        ``char_lengths`` and ``mask`` may be on the CPU while ``chars`` is on a GPU: the valid tokens
        are then picked on the host, with no wait for the GPU's queued kernels."""
        batch, steps, width = chars.shape
        valid = mask.reshape(-1).nonzero().squeeze(1)  # (N,): the N valid tokens' places in (B * T)
        word_lengths = char_lengths.reshape(-1)[valid]  # (N,), each >= 1
        # Trim the char padding that only the batch's longest word needed among the valid ones.
        longest = int(word_lengths.max())
        valid = valid.to(chars.device, non_blocking=True)
        words = chars.reshape(-1, width)[valid, :longest]  # (N, W')
        _, final = self.encoder(words, word_lengths)
        h_n = final[0] if isinstance(final, tuple) else final  # (2, N, H): forward, backward
        encoded = self.dropout(torch.cat([h_n[0], h_n[1]], dim=1))  # (N, 2H)
        output = encoded.new_zeros(batch * steps, self.output_size).index_copy(0, valid, encoded)
        return output.view(batch, steps, self.output_size)
