"""Metrics for generated token sequences, each scored against its closest reference.

A hypothesis is a list of token ids already cut at the end-of-sequence token (no ``<bos>``,
``<eos>`` or padding); each example has one or more references (e.g. the pronunciations of a
word). Every metric takes ``update(hypotheses, references)`` with ``hypotheses`` a list of B
sequences and ``references`` a list of B non-empty lists of sequences; its states are sums, so
they sync across DDP ranks. :class:`SequenceMetrics` updates them all with one call.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torchmetrics import Metric, MetricCollection
from torchmetrics.text import BLEUScore


def edit_distance(hypothesis: Sequence[int], reference: Sequence[int]) -> int:
    """Levenshtein distance: the fewest insertions, deletions and substitutions (cost 1 each)."""
    previous = list(range(len(reference) + 1))  # distances from the empty hypothesis prefix
    for i, token in enumerate(hypothesis, start=1):
        current = [i]
        for j, reference_token in enumerate(reference, start=1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (token != reference_token)))
        previous = current
    return previous[-1]


def closest_reference(hypothesis: Sequence[int], references: Sequence[Sequence[int]]) -> tuple[int, int]:
    """(index, edit distance) of the reference nearest to ``hypothesis``; ties go to the shortest
    reference (the error rate counts against the fewest reference tokens), then to the first."""
    if not references:
        raise ValueError("closest_reference needs at least one reference")
    distances = [edit_distance(hypothesis, reference) for reference in references]
    index = min(range(len(references)), key=lambda i: (distances[i], len(references[i]), i))
    return index, distances[index]


def _check_batch(hypotheses: Sequence[Sequence[int]], references: Sequence[Sequence[Sequence[int]]]) -> None:
    if len(hypotheses) != len(references):
        raise ValueError(f"got {len(hypotheses)} hypotheses but references for {len(references)} examples")
    if any(len(example) == 0 for example in references):
        raise ValueError("every example needs at least one reference")


def _ratio(numerator: torch.Tensor, denominator: torch.Tensor) -> torch.Tensor:
    """numerator / denominator as float, 0 where the denominator is 0 (no NaN before any update)."""
    return torch.where(denominator > 0, numerator.double() / denominator.clamp(min=1), 0.0).float()


class ExactMatch(Metric):
    """Fraction of examples whose hypothesis equals one of its references (0 before any update)."""

    full_state_update = False
    higher_is_better = True

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.add_state("matches", torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")
        self.add_state("examples", torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, hypotheses: Sequence[Sequence[int]], references: Sequence[Sequence[Sequence[int]]]) -> None:
        """hypotheses: B token-id lists; references: B non-empty lists of token-id lists."""
        _check_batch(hypotheses, references)
        # Compared as tuples, so a list hypothesis equals a tuple reference with the same ids.
        self.matches += sum(tuple(hypothesis) in set(map(tuple, example)) for hypothesis, example in zip(hypotheses, references))
        self.examples += len(hypotheses)

    def compute(self) -> torch.Tensor:
        return _ratio(self.matches, self.examples)


class TokenErrorRate(Metric):
    """Corpus token error rate: summed edit distances to each example's closest reference / summed
    lengths of those references (the phoneme error rate for G2P; not the translation edit rate).
    A corpus ratio, not a mean of per-example ratios, so long references weigh more. 0 when no
    reference token has been seen."""

    full_state_update = False
    higher_is_better = False

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.add_state("errors", torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")
        self.add_state("reference_tokens", torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, hypotheses: Sequence[Sequence[int]], references: Sequence[Sequence[Sequence[int]]]) -> None:
        """hypotheses: B token-id lists; references: B non-empty lists of token-id lists."""
        _check_batch(hypotheses, references)
        errors = tokens = 0
        for hypothesis, example in zip(hypotheses, references):
            index, distance = closest_reference(hypothesis, example)
            errors += distance
            tokens += len(example[index])
        self.errors += errors
        self.reference_tokens += tokens

    def compute(self) -> torch.Tensor:
        return _ratio(self.errors, self.reference_tokens)


def _words(sequence: Sequence[int]) -> str:
    """Token ids as the whitespace-separated words torchmetrics' BLEU tokenises."""
    return " ".join(map(str, sequence))


class SequenceBLEU(BLEUScore):
    """Corpus BLEU-4 (torchmetrics' :class:`BLEUScore`, uniform weights, no smoothing) over token
    ids, with all of an example's references as its references.

    Without smoothing a 4-gram precision of 0 makes BLEU 0: a corpus whose hypotheses match no
    reference 4-gram, e.g. one where every hypothesis is shorter than 4 tokens, scores 0.
    """

    def update(  # type: ignore[override]
        self, hypotheses: Sequence[Sequence[int]], references: Sequence[Sequence[Sequence[int]]]
    ) -> None:
        """hypotheses: B token-id lists; references: B non-empty lists of token-id lists."""
        _check_batch(hypotheses, references)
        super().update([_words(hypothesis) for hypothesis in hypotheses], [[_words(r) for r in example] for example in references])


class SequenceMetrics(MetricCollection):
    """``exact_match``, ``ter`` and ``bleu`` of generated sequences, updated together.

    ``update(hypotheses, references)`` once per batch; ``compute()`` gives
    ``{"exact_match", "ter", "bleu"}`` as float tensors over every update since the last
    ``reset()`` (each 0 before any update). A collection of separate metrics rather than one
    metric holding a BLEU submetric: each keeps its own states, so ``forward``, ``reset`` and
    the DDP sync work as torchmetrics defines them.
    """

    def __init__(self) -> None:
        # No compute groups: the three metrics share no state, so there is nothing to merge.
        super().__init__({"exact_match": ExactMatch(), "ter": TokenErrorRate(), "bleu": SequenceBLEU()}, compute_groups=False)
