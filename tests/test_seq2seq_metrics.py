"""Sequence metrics: edit distance, closest reference, exact match, corpus token error rate and
BLEU against torchmetrics' own, accumulation, reset, and sum-reduced (DDP) states."""

from __future__ import annotations

import functools
import random

import pytest
from torchmetrics.functional.text import bleu_score

from rnnlab.tasks.seq2seq_metrics import (
    ExactMatch,
    SequenceBLEU,
    SequenceMetrics,
    TokenErrorRate,
    closest_reference,
    edit_distance,
)


def brute_force_distance(a: tuple[int, ...], b: tuple[int, ...]) -> int:
    """The textbook recursion, memoised: delete from a, insert into a, or substitute / keep."""

    @functools.cache
    def distance(i: int, j: int) -> int:
        if i == 0 or j == 0:
            return i + j
        return min(distance(i - 1, j) + 1, distance(i, j - 1) + 1, distance(i - 1, j - 1) + (a[i - 1] != b[j - 1]))

    return distance(len(a), len(b))


def scores(metric: SequenceMetrics) -> dict[str, float]:
    return {name: value.item() for name, value in metric.compute().items()}


# -- edit distance and the closest reference -----------------------------------------------------


def test_edit_distance_known_cases() -> None:
    assert edit_distance(list(b"kitten"), list(b"sitting")) == 3
    assert edit_distance(list(b"sitting"), list(b"kitten")) == 3
    assert edit_distance([], []) == 0
    assert edit_distance([], [1, 2, 3]) == 3
    assert edit_distance([1, 2], []) == 2
    assert edit_distance([1, 2, 3], [1, 2, 3]) == 0
    assert edit_distance([1, 2, 3], [3, 2, 1]) == 2


def test_edit_distance_matches_brute_force() -> None:
    rng = random.Random(0)
    for _ in range(300):
        a = tuple(rng.randrange(4) for _ in range(rng.randrange(8)))
        b = tuple(rng.randrange(4) for _ in range(rng.randrange(8)))
        assert edit_distance(a, b) == brute_force_distance(a, b), (a, b)


def test_closest_reference_takes_the_smallest_distance() -> None:
    assert closest_reference([1, 2, 3], [[9, 9, 9, 9], [1, 2, 4], [1]]) == (1, 1)
    assert closest_reference([], [[1, 2], [3]]) == (1, 1)


def test_closest_reference_ties_go_to_the_shortest_then_the_first() -> None:
    assert closest_reference([1, 2], [[1, 2, 3], [1]]) == (1, 1)  # both 1 away: the shorter wins
    assert closest_reference([1, 2], [[1, 3], [3, 2]]) == (0, 1)  # same distance and length: the first
    with pytest.raises(ValueError, match="at least one reference"):
        closest_reference([1], [])


# -- metrics -------------------------------------------------------------------------------------


def test_exact_match_counts_a_hit_on_any_reference() -> None:
    metric = ExactMatch()
    metric.update([[1, 2], [3], [4, 5]], [[[9], [1, 2]], [[3, 3]], [(4, 5)]])  # tuple references compare too
    assert metric.compute().item() == pytest.approx(2 / 3)
    metric.update([[7]], [[[7]]])
    assert metric.compute().item() == pytest.approx(3 / 4)


def test_token_error_rate_is_a_corpus_ratio_over_closest_references() -> None:
    metric = TokenErrorRate()
    # 1 error against [1, 2, 4] (3 tokens; [9] is 3 away), 4 errors against a 5-token reference.
    metric.update([[1, 2, 3], [5]], [[[1, 2, 4], [9]], [[5, 6, 7, 8, 9]]])
    assert metric.compute().item() == pytest.approx(5 / 8)
    assert metric.compute().item() != pytest.approx((1 / 3 + 4 / 5) / 2)  # not a mean of ratios


def test_token_error_rate_counts_the_shortest_of_tied_references() -> None:
    metric = TokenErrorRate()
    metric.update([[1, 2]], [[[1, 2, 3], [1]]])
    assert metric.compute().item() == pytest.approx(1 / 1)


def test_bleu_by_hand() -> None:
    # 1- to 4-gram precisions 4/5, 3/4, 2/3, 1/2; equal lengths, so no brevity penalty.
    metric = SequenceBLEU()
    metric.update([[1, 2, 3, 4, 5]], [[[1, 2, 3, 4, 6]]])
    assert metric.compute().item() == pytest.approx((4 / 5 * 3 / 4 * 2 / 3 * 1 / 2) ** 0.25, rel=1e-6)


def test_bleu_equals_torchmetrics_on_strings_with_several_references() -> None:
    rng = random.Random(1)
    hypotheses, references = [], []
    for _ in range(20):
        base = [rng.randrange(6) for _ in range(rng.randrange(3, 10))]
        hypotheses.append([t if rng.random() > 0.2 else rng.randrange(6) for t in base])
        references.append([[t for t in base if rng.random() > 0.15] for _ in range(rng.randrange(1, 4))])
    metric = SequenceBLEU()
    metric.update(hypotheses[:7], references[:7])  # accumulated over batches: still one corpus
    metric.update(hypotheses[7:], references[7:])
    expected = bleu_score(
        [" ".join(map(str, h)) for h in hypotheses], [[" ".join(map(str, r)) for r in refs] for refs in references]
    )
    assert 0 < expected.item() < 1
    assert metric.compute().item() == pytest.approx(expected.item(), rel=1e-6)


def test_perfect_hypotheses_score_one() -> None:
    metric = SequenceMetrics()
    metric.update([[1, 2, 3, 4], [5, 6, 7, 8, 9]], [[[1, 2, 3, 4]], [[0], [5, 6, 7, 8, 9]]])
    assert scores(metric) == {"exact_match": 1.0, "ter": 0.0, "bleu": pytest.approx(1.0)}


def test_bleu_is_zero_without_a_matching_4_gram() -> None:
    # No smoothing: hypotheses shorter than 4 tokens have no 4-grams, even when they are exact.
    metric = SequenceMetrics()
    metric.update([[1, 2, 3]], [[[1, 2, 3]]])
    assert scores(metric) == {"exact_match": 1.0, "ter": 0.0, "bleu": 0.0}


def test_one_update_fills_every_metric_and_reset_clears_them() -> None:
    metric = SequenceMetrics()
    metric.update([[1, 2, 3, 4, 5], [5]], [[[1, 2, 3, 4, 6]], [[5], [5, 6]]])
    first = scores(metric)
    assert (first["exact_match"], first["ter"]) == (0.5, pytest.approx(1 / 6))
    assert 0 < first["bleu"] < 1
    metric.reset()
    metric.update([[7, 8, 9, 10]], [[[7, 8, 9, 10]]])
    assert scores(metric) == {"exact_match": 1.0, "ter": 0.0, "bleu": pytest.approx(1.0)}


def test_forward_gives_the_batch_and_keeps_accumulating() -> None:
    metric = SequenceMetrics()
    metric.update([[1, 2, 3, 4, 5]], [[[1, 2, 3, 4, 6]]])
    batch = metric([[1, 2, 3, 4]], [[[1, 2, 3, 4]]])
    assert {name: value.item() for name, value in batch.items()} == {"exact_match": 1.0, "ter": 0.0, "bleu": pytest.approx(1.0)}
    assert scores(metric)["exact_match"] == 0.5
    assert scores(metric)["ter"] == pytest.approx(1 / 9)


def test_no_update_gives_zeros() -> None:
    metric = SequenceMetrics()
    with pytest.warns(UserWarning, match="before the ``update``"):
        assert scores(metric) == {"exact_match": 0.0, "ter": 0.0, "bleu": 0.0}


def test_mismatched_batches_are_rejected() -> None:
    metric = SequenceMetrics()
    with pytest.raises(ValueError, match="2 hypotheses"):
        metric.update([[1], [2]], [[[1]]])
    with pytest.raises(ValueError, match="at least one reference"):
        metric.update([[1]], [[]])


def test_states_summed_across_processes_equal_one_process() -> None:
    """What DDP's sync does (every state has dist_reduce_fx="sum"): two ranks' states, added."""
    rng = random.Random(2)
    hypotheses = [[rng.randrange(5) for _ in range(rng.randrange(1, 9))] for _ in range(16)]
    references = [[[rng.randrange(5) for _ in range(rng.randrange(1, 9))] for _ in range(2)] for _ in range(16)]
    whole, rank0, rank1 = SequenceMetrics(), SequenceMetrics(), SequenceMetrics()
    whole.update(hypotheses, references)
    rank0.update(hypotheses[::2], references[::2])
    rank1.update(hypotheses[1::2], references[1::2])
    for name, metric in rank0.items():
        for state, value in rank1[name].metric_state.items():
            setattr(metric, state, getattr(metric, state) + value)
    assert scores(rank0) == pytest.approx(scores(whole))
