"""Linear-chain conditional random field over per-step tag scores.

A path's score is ``start[y_0] + sum_t emissions[t, y_t] + sum_t transitions[y_{t-1}, y_t] + end[y_{L-1}]``
over the valid steps of a sequence. Every method takes ``emissions`` (B, T, C) and ``mask``
(B, T), True at valid steps, which form a prefix of at least one step; padded steps never change
a result, whatever their emission values (inf and NaN included).
"""

from __future__ import annotations

import torch
from torch import nn

from rnnlab.batch import IGNORE_INDEX
from rnnlab.errors import check_choice


#: Added to the score of a forbidden start, transition or end. Finite rather than -inf: a
#: logsumexp or max over only -inf terms gives -inf and gradients of inf - inf (NaN), and a gold
#: path through a forbidden transition would give an infinite loss. exp(-1e4) is 0 in float32 and
#: float64, so forbidden paths carry no probability mass; the value also fits in float16.
FORBIDDEN = -1e4

REDUCTIONS = ("mean", "sum", "token_mean", "none")


class LinearChainCRF(nn.Module):
    """A CRF over ``num_tags`` tags with learned start, transition and end scores.

    ``constraints`` is ``(start (C,), transitions (C, C) [from, to], end (C,))`` bool masks of the
    allowed tag sequences (see ``rnnlab.tag_schemes.allowed_transitions``); forbidden
    entries get :data:`FORBIDDEN` added to their score, so decoding never uses them. A gold path
    that breaks a constraint still gets a finite, but very large, loss.
    """

    def __init__(
        self,
        num_tags: int,
        constraints: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None,
    ) -> None:
        super().__init__()
        self.num_tags = num_tags
        self.start_transitions = nn.Parameter(torch.empty(num_tags).uniform_(-0.1, 0.1))
        self.transitions = nn.Parameter(torch.empty(num_tags, num_tags).uniform_(-0.1, 0.1))
        self.end_transitions = nn.Parameter(torch.empty(num_tags).uniform_(-0.1, 0.1))
        if constraints is None:
            constraints = (
                torch.ones(num_tags, dtype=torch.bool),
                torch.ones(num_tags, num_tags, dtype=torch.bool),
                torch.ones(num_tags, dtype=torch.bool),
            )
        start, transitions, end = constraints
        if start.shape != (num_tags,) or transitions.shape != (num_tags, num_tags) or end.shape != (num_tags,):
            raise ValueError(
                f"constraints must be masks of shapes ({num_tags},), ({num_tags}, {num_tags}), ({num_tags},); "
                f"got {tuple(start.shape)}, {tuple(transitions.shape)}, {tuple(end.shape)}"
            )
        for name, allowed in (("start_bias", start), ("transition_bias", transitions), ("end_bias", end)):
            self.register_buffer(name, torch.where(allowed.bool(), 0.0, FORBIDDEN))

    def _potentials(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Start (C,), transition (C, C) and end (C,) scores with the constraints applied."""
        return (
            self.start_transitions + self.start_bias,
            self.transitions + self.transition_bias,
            self.end_transitions + self.end_bias,
        )

    def log_partition(self, emissions: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """emissions (B, T, C), mask (B, T) -> log of the summed exp-score of all paths (B,)."""
        start, transitions, end = self._potentials()
        emissions = emissions.masked_fill(~mask.unsqueeze(-1), 0.0)  # NaN at padding would leak into gradients
        alpha = start + emissions[:, 0]  # (B, C)
        for t in range(1, emissions.shape[1]):
            step = torch.logsumexp(alpha.unsqueeze(2) + transitions, dim=1) + emissions[:, t]
            alpha = torch.where(mask[:, t].unsqueeze(1), step, alpha)  # frozen after the last valid step
        return torch.logsumexp(alpha + end, dim=1)

    def score(self, emissions: torch.Tensor, tags: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """emissions (B, T, C), tags (B, T) long, mask (B, T) -> unnormalised score of ``tags`` (B,).

        Tags at padded steps are ignored (any value, e.g. -100).
        """
        start, transitions, end = self._potentials()
        emissions = emissions.masked_fill(~mask.unsqueeze(-1), 0.0)
        tags = tags.masked_fill(~mask, 0)
        emitted = emissions.gather(2, tags.unsqueeze(-1)).squeeze(-1).sum(dim=1)  # zeros at padding
        moved = transitions[tags[:, :-1], tags[:, 1:]].masked_fill(~mask[:, 1:], 0.0).sum(dim=1)
        last = tags.gather(1, (mask.sum(dim=1, keepdim=True) - 1)).squeeze(1)
        return start[tags[:, 0]] + emitted + moved + end[last]

    def log_likelihood(self, emissions: torch.Tensor, tags: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """emissions (B, T, C), tags (B, T), mask (B, T) -> log p(tags | emissions) (B,)."""
        return self.score(emissions, tags, mask) - self.log_partition(emissions, mask)

    def forward(
        self, emissions: torch.Tensor, tags: torch.Tensor, mask: torch.Tensor, reduction: str = "mean"
    ) -> torch.Tensor:
        """Negative log-likelihood of ``tags``: emissions (B, T, C), tags (B, T), mask (B, T).

        ``reduction``: ``mean`` over sequences (the default, the usual CRF loss), ``sum``,
        ``token_mean`` (summed over sequences / number of valid steps, a per-token scale like
        cross-entropy's) or ``none`` (B,).
        """
        check_choice("reduction", reduction, REDUCTIONS)
        nll = -self.log_likelihood(emissions, tags, mask)
        if reduction == "mean":
            return nll.mean()
        if reduction == "sum":
            return nll.sum()
        if reduction == "token_mean":
            return nll.sum() / mask.sum()
        return nll

    @torch.no_grad()
    def viterbi(self, emissions: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """emissions (B, T, C), mask (B, T) -> best paths (B, T) long and their scores (B,).

        Paths hold ``IGNORE_INDEX`` at padded steps; backtracking runs over the whole batch at once.
        """
        start, transitions, end = self._potentials()
        emissions = emissions.masked_fill(~mask.unsqueeze(-1), 0.0)
        best = start + emissions[:, 0]  # (B, C): best score of a path ending in each tag
        backpointers = []  # per step t >= 1: (B, C) best previous tag for each tag at t
        for t in range(1, emissions.shape[1]):
            step, previous = (best.unsqueeze(2) + transitions).max(dim=1)
            best = torch.where(mask[:, t].unsqueeze(1), step + emissions[:, t], best)
            backpointers.append(previous)
        scores, current = (best + end).max(dim=1)  # current: (B,) tag at each sequence's last valid step
        paths = torch.empty_like(mask, dtype=torch.long)
        for t in range(emissions.shape[1] - 1, 0, -1):
            paths[:, t] = current
            # Padded steps keep the last tag, so each row starts backtracking at its own length.
            previous = backpointers[t - 1].gather(1, current.unsqueeze(1)).squeeze(1)
            current = torch.where(mask[:, t], previous, current)
        paths[:, 0] = current
        return paths.masked_fill(~mask, IGNORE_INDEX), scores

    def decode(self, emissions: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """emissions (B, T, C), mask (B, T) -> best paths (B, T) long, ``IGNORE_INDEX`` at padding."""
        return self.viterbi(emissions, mask)[0]
