"""Greedy and beam search over a :class:`~rnnlab.heads.seq2seq.Seq2SeqDecoder`, vectorised over the
batch (and the beams): one decoder call per output step for all rows together.

A hypothesis ends at ``<eos>`` (not part of its tokens) or after its row's ``max_lengths`` tokens.
Scores are summed natural-log probabilities of the tokens and the final ``<eos>``; beam search
ranks its final hypotheses by score / lp with the GNMT length penalty
lp = ((5 + length) / 6) ** length_penalty (Wu et al. 2016; 0 ranks by raw log-probability), where
length counts the tokens and the ``<eos>``. ``banned`` tokens (``<pad>``, ``<bos>``) are never chosen.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from rnnlab.heads.seq2seq import DecoderState, Memory, Seq2SeqDecoder


@dataclass
class Hypotheses:
    """K hypotheses per example, best first.

    tokens (B, K, L) padded with ``pad``; lengths (B, K) tokens before <eos>; scores (B, K) the
    ranking score; log_probs (B, K) summed log-probabilities; attention (B, K, L, S) or None.
    """

    tokens: torch.Tensor
    lengths: torch.Tensor
    scores: torch.Tensor
    log_probs: torch.Tensor
    attention: torch.Tensor | None

    def sequences(self, rank: int = 0) -> list[list[int]]:
        """The ``rank``-th hypothesis of every example as a list of ids."""
        return [row[:length] for row, length in zip(self.tokens[:, rank].tolist(), self.lengths[:, rank].tolist())]


def length_penalty(lengths: torch.Tensor, alpha: float) -> torch.Tensor:
    """GNMT's ((5 + length) / 6) ** alpha."""
    return ((5.0 + lengths.float()) / 6.0) ** alpha


def _log_probs(logits: torch.Tensor, banned: torch.Tensor) -> torch.Tensor:
    # Masked after the softmax: scores stay the model's own log-probabilities.
    return F.log_softmax(logits.float(), dim=-1).masked_fill(banned, float("-inf"))


@torch.no_grad()
def greedy_search(
    decoder: Seq2SeqDecoder,
    memory: Memory,
    state: DecoderState,
    max_lengths: torch.Tensor,
    bos: int,
    eos: int,
    pad: int,
    banned: torch.Tensor,
) -> Hypotheses:
    """The most likely token at every step, for all B rows at once -> :class:`Hypotheses` with K = 1.

    max_lengths (B,) tokens per row at most, on any device (on the CPU, read with no wait for a GPU);
    banned (V,) bool.
    """
    batch = memory.mask.shape[0]
    device = memory.mask.device
    steps = int(max_lengths.max())
    max_lengths = max_lengths.to(device, non_blocking=True)
    tokens = torch.full((batch,), bos, dtype=torch.long, device=device)
    output = torch.full((batch, steps), pad, dtype=torch.long, device=device)
    attention = memory.outputs.new_zeros(batch, steps, memory.mask.shape[1])
    lengths = torch.zeros(batch, dtype=torch.long, device=device)
    log_probs = torch.zeros(batch, device=device)
    finished = torch.zeros(batch, dtype=torch.bool, device=device)
    for step in range(steps):
        logits, state, weights = decoder.step(tokens, state, memory)
        best, tokens = _log_probs(logits, banned).max(dim=1)
        active = ~finished
        emitted = active & (tokens != eos)
        log_probs += best.masked_fill(~active, 0.0)
        output[:, step] = tokens.masked_fill(~emitted, pad)
        lengths += emitted.long()
        if weights is not None:
            attention[:, step] = weights.masked_fill(~active.unsqueeze(1), 0.0)
        finished |= (tokens == eos) | (step + 1 >= max_lengths)
        if bool(finished.all()):
            break
    has_attention = decoder.attention is not None
    return Hypotheses(
        output.unsqueeze(1),
        lengths.unsqueeze(1),
        log_probs.unsqueeze(1),
        log_probs.unsqueeze(1),
        attention.unsqueeze(1) if has_attention else None,
    )


@torch.no_grad()
def beam_search(
    decoder: Seq2SeqDecoder,
    memory: Memory,
    state: DecoderState,
    max_lengths: torch.Tensor,
    bos: int,
    eos: int,
    pad: int,
    banned: torch.Tensor,
    beam_size: int,
    alpha: float = 0.0,
) -> Hypotheses:
    """The ``beam_size`` best hypotheses of every row, all B * K beams in one decoder call per step.

    A finished hypothesis keeps its place and score (it extends only by <pad>, at no cost) until
    every beam of every row has finished or reached its row's max length; the K survivors are
    then ranked by length-penalised score.
    """
    batch, beams = memory.mask.shape[0], beam_size
    device = memory.mask.device
    steps = int(max_lengths.max())
    max_lengths = max_lengths.to(device, non_blocking=True)
    rows = torch.arange(batch, device=device)
    memory = memory.repeat_interleave(beams)
    state = state.select(rows.repeat_interleave(beams))
    vocab = decoder.projection.out_features
    # Only beam 0 is live at the start, so the first step's K candidates come from one beam.
    scores = torch.full((batch, beams), float("-inf"), device=device)
    scores[:, 0] = 0.0
    extend_finished = torch.full((vocab,), float("-inf"), device=device)
    extend_finished[pad] = 0.0
    tokens = torch.full((batch * beams,), bos, dtype=torch.long, device=device)
    output = torch.full((batch, beams, 0), pad, dtype=torch.long, device=device)
    attention = memory.outputs.new_zeros(batch, beams, 0, memory.mask.shape[1])
    lengths = torch.zeros(batch, beams, dtype=torch.long, device=device)
    finished = torch.zeros(batch, beams, dtype=torch.bool, device=device)
    ended_by_eos = torch.zeros(batch, beams, dtype=torch.bool, device=device)
    limit = max_lengths.view(batch, 1)
    has_attention = decoder.attention is not None
    for step in range(steps):
        logits, state, weights = decoder.step(tokens, state, memory)
        log_probs = _log_probs(logits, banned).view(batch, beams, vocab)
        log_probs = torch.where(finished.unsqueeze(2), extend_finished, log_probs)
        candidates = (scores.unsqueeze(2) + log_probs).view(batch, beams * vocab)
        scores, chosen = candidates.topk(beams, dim=1)  # (B, K)
        origin, tokens = chosen // vocab, chosen % vocab
        flat_origin = (rows.unsqueeze(1) * beams + origin).view(-1)
        state = state.select(flat_origin)
        was_finished = finished.gather(1, origin)
        emitted = ~was_finished & (tokens != eos)
        output = torch.cat([output.gather(1, origin.unsqueeze(2).expand_as(output)), tokens.masked_fill(~emitted, pad).unsqueeze(2)], dim=2)
        if has_attention:
            step_weights = weights.view(batch, beams, -1).gather(1, origin.unsqueeze(2).expand(-1, -1, weights.shape[1]))
            step_weights = step_weights.masked_fill(was_finished.unsqueeze(2), 0.0)
            previous = attention.gather(1, origin.view(batch, beams, 1, 1).expand_as(attention))
            attention = torch.cat([previous, step_weights.unsqueeze(2)], dim=2)
        lengths = lengths.gather(1, origin) + emitted.long()
        ended_by_eos = ended_by_eos.gather(1, origin) | (~was_finished & (tokens == eos))
        finished = was_finished | (tokens == eos) | (step + 1 >= limit)
        tokens = tokens.view(-1)
        if bool(finished.all()):
            break
    ranking = scores / length_penalty(lengths + ended_by_eos.long(), alpha)
    ranking = ranking.masked_fill(torch.isinf(scores), float("-inf"))
    order = ranking.argsort(dim=1, descending=True, stable=True)
    pick = order.unsqueeze(2)
    return Hypotheses(
        output.gather(1, pick.expand_as(output)),
        lengths.gather(1, order),
        ranking.gather(1, order),
        scores.gather(1, order),
        attention.gather(1, order.view(batch, beams, 1, 1).expand_as(attention)) if has_attention else None,
    )
