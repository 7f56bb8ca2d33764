"""LinearChainCRF: forward algorithm and Viterbi against brute-force enumeration, padding, constraints, learning."""

from __future__ import annotations

import itertools

import pytest
import torch

from rnnlab.errors import UserError
from rnnlab.heads.crf import IGNORE_INDEX, LinearChainCRF
from rnnlab.tag_schemes import allowed_transitions

# Mixed lengths including 1 and one shorter than T, so every row has padding.
LENGTHS = [1, 4, 2, 3, 4]
STEPS = 5

# (labels, scheme): small constrained tag sets for brute force.
CONSTRAINED = [
    (["O", "B-PER", "I-PER"], "IOB2"),
    (["O", "I-PER", "B-PER", "I-LOC"], "IOB1"),
    (["O", "B-PER", "I-PER", "E-PER", "S-PER"], "BIOES"),
]


def lengths_mask(lengths: list[int], steps: int = STEPS) -> torch.Tensor:
    return torch.arange(steps).unsqueeze(0) < torch.tensor(lengths).unsqueeze(1)


def make_crf(num_tags: int, constraints=None, seed: int = 0) -> LinearChainCRF:
    torch.manual_seed(seed)
    crf = LinearChainCRF(num_tags, constraints).double()
    with torch.no_grad():  # larger than the init so that the transitions matter
        for parameter in crf.parameters():
            parameter.uniform_(-2.0, 2.0)
    return crf


def junk_padded_emissions(lengths: list[int], num_tags: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Random emissions (B, T, C) float64 with huge, inf and NaN junk at padded steps, and the mask."""
    generator = torch.Generator().manual_seed(seed)
    mask = lengths_mask(lengths)
    emissions = torch.randn(len(lengths), STEPS, num_tags, generator=generator, dtype=torch.float64) * 2
    junk = torch.randn(emissions.shape, generator=generator, dtype=torch.float64) * 1e6
    junk[..., 0] = float("inf")
    junk[:, -1, -1] = float("nan")
    return torch.where(mask.unsqueeze(-1), emissions, junk), mask


def brute_force(crf: LinearChainCRF, emissions: torch.Tensor, length: int, constraints=None) -> list:
    """(score, path) of every path of one sequence (T, C), from the raw parameters; allowed paths only."""
    start, transitions, end = (p.detach() for p in (crf.start_transitions, crf.transitions, crf.end_transitions))
    num_tags = emissions.shape[-1]
    results = []
    for path in itertools.product(range(num_tags), repeat=length):
        if constraints is not None:
            allowed_start, allowed, allowed_end = constraints
            steps_allowed = all(allowed[a, b] for a, b in zip(path, path[1:]))
            if not (allowed_start[path[0]] and allowed_end[path[-1]] and steps_allowed):
                continue
        value = start[path[0]] + end[path[-1]] + sum(emissions[t, y] for t, y in enumerate(path))
        value = value + sum(transitions[a, b] for a, b in zip(path, path[1:]))
        results.append((float(value), path))
    return results


def check_against_brute_force(crf: LinearChainCRF, constraints=None) -> None:
    emissions, mask = junk_padded_emissions(LENGTHS, crf.num_tags)
    log_z = crf.log_partition(emissions, mask)
    paths, best_scores = crf.viterbi(emissions, mask)
    for b, length in enumerate(LENGTHS):
        results = brute_force(crf, emissions[b], length, constraints)
        scores = torch.tensor([value for value, _ in results], dtype=torch.float64)
        assert log_z[b].item() == pytest.approx(torch.logsumexp(scores, 0).item(), abs=1e-9)
        best_value, best_path = max(results)
        assert paths[b, :length].tolist() == list(best_path)
        assert (paths[b, length:] == IGNORE_INDEX).all()
        assert best_scores[b].item() == pytest.approx(best_value, abs=1e-9)
    # The score of a path is the brute-force sum, and of the Viterbi path its Viterbi score.
    torch.testing.assert_close(crf.score(emissions, paths, mask), best_scores)


@pytest.mark.parametrize("num_tags", [3, 4])
def test_unconstrained_matches_brute_force(num_tags: int) -> None:
    check_against_brute_force(make_crf(num_tags))


@pytest.mark.parametrize(("labels", "scheme"), CONSTRAINED)
def test_constrained_matches_brute_force_over_allowed_paths(labels: list[str], scheme: str) -> None:
    constraints = allowed_transitions(labels, scheme)
    check_against_brute_force(make_crf(len(labels), constraints), constraints)


def test_score_of_given_tags_matches_brute_force_and_ignores_padding_tags() -> None:
    crf = make_crf(4)
    emissions, mask = junk_padded_emissions(LENGTHS, 4)
    tags = torch.randint(0, 4, mask.shape, generator=torch.Generator().manual_seed(1)).masked_fill(~mask, IGNORE_INDEX)
    scores = crf.score(emissions, tags, mask)
    for b, length in enumerate(LENGTHS):
        path = tuple(tags[b, :length].tolist())
        expected = dict((p, v) for v, p in brute_force(crf, emissions[b], length))[path]
        assert scores[b].item() == pytest.approx(expected, abs=1e-9)


@pytest.mark.parametrize("constrained", [False, True])
def test_nll_is_non_negative_and_gradients_finite(constrained: bool) -> None:
    labels, scheme = CONSTRAINED[2]
    crf = LinearChainCRF(len(labels), allowed_transitions(labels, scheme) if constrained else None)
    emissions, mask = junk_padded_emissions(LENGTHS, len(labels))
    emissions = emissions.float().requires_grad_()
    tags = torch.randint(0, len(labels), mask.shape).masked_fill(~mask, IGNORE_INDEX)  # may break constraints
    nll = crf(emissions, tags, mask, reduction="none")
    assert nll.shape == (len(LENGTHS),)
    assert (nll >= -1e-4).all()
    crf(emissions, tags, mask).backward()
    for gradient in (emissions.grad, *(p.grad for p in crf.parameters())):
        assert torch.isfinite(gradient).all()
    assert (emissions.grad[~mask] == 0).all()


def test_reductions() -> None:
    crf = make_crf(3)
    emissions, mask = junk_padded_emissions(LENGTHS, 3)
    tags = torch.zeros(mask.shape, dtype=torch.long)
    nll = crf(emissions, tags, mask, reduction="none")
    torch.testing.assert_close(nll, -crf.log_likelihood(emissions, tags, mask))
    torch.testing.assert_close(crf(emissions, tags, mask), nll.mean())
    torch.testing.assert_close(crf(emissions, tags, mask, reduction="sum"), nll.sum())
    torch.testing.assert_close(crf(emissions, tags, mask, reduction="token_mean"), nll.sum() / sum(LENGTHS))
    with pytest.raises(UserError, match="reduction"):
        crf(emissions, tags, mask, reduction="max")


def test_padding_invariance_alone_vs_in_batch() -> None:
    crf = make_crf(4)
    emissions, mask = junk_padded_emissions(LENGTHS, 4)
    emissions.requires_grad_()
    tags = torch.randint(0, 4, mask.shape, generator=torch.Generator().manual_seed(2))
    batch_nll = crf(emissions, tags, mask, reduction="none")
    batch_paths, batch_scores = crf.viterbi(emissions, mask)
    batch_nll.sum().backward()
    for b, length in enumerate(LENGTHS):
        alone = emissions.detach()[b : b + 1, :length].clone().requires_grad_()
        alone_mask = torch.ones(1, length, dtype=torch.bool)
        nll = crf(alone, tags[b : b + 1, :length], alone_mask, reduction="none")
        nll.sum().backward()
        paths, scores = crf.viterbi(alone, alone_mask)
        torch.testing.assert_close(nll[0], batch_nll[b])
        torch.testing.assert_close(scores[0], batch_scores[b])
        assert paths[0].tolist() == batch_paths[b, :length].tolist()
        torch.testing.assert_close(alone.grad[0], emissions.grad[b, :length])


def test_constrained_decoding_never_takes_a_forbidden_transition() -> None:
    labels = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]
    constraints = allowed_transitions(labels, "IOB2")
    crf = LinearChainCRF(len(labels), constraints)
    # Emissions shout "O I-PER I-LOC ..." (and I-PER first): forbidden under IOB2.
    emissions = torch.zeros(3, 6, len(labels))
    emissions[0, :, 2] = 50.0  # I-PER everywhere
    emissions[1, 0::2, 0] = 50.0  # O, I-LOC, O, I-LOC, ...
    emissions[1, 1::2, 4] = 50.0
    emissions[2] = torch.randn(6, len(labels)) * 50.0
    mask = lengths_mask([6, 5, 3], 6)
    paths = crf.decode(emissions, mask)
    unconstrained = LinearChainCRF(len(labels))
    assert unconstrained.decode(emissions, mask)[0, 0] == 2  # the emissions alone would start with I-PER
    start, transitions, end = constraints
    for row, length in zip(paths.tolist(), [6, 5, 3]):
        path = row[:length]
        assert start[path[0]] and end[path[-1]]
        assert all(transitions[a, b] for a, b in zip(path, path[1:]))
    assert paths[0].tolist() == [1, 2, 2, 2, 2, 2]  # B-PER then I-PER: the closest allowed path


def test_training_fits_a_toy_pattern() -> None:
    # Tags follow 0 -> 1 -> 2 -> 0 ...; a tag's emission is informative only at the first step,
    # so the CRF must learn the transitions.
    torch.manual_seed(0)
    crf = LinearChainCRF(3)
    lengths = [6, 4, 5, 2]
    mask = lengths_mask(lengths, 6)
    first = torch.tensor([0, 1, 2, 1])
    tags = (first.unsqueeze(1) + torch.arange(6)) % 3
    emissions_table = torch.zeros(len(lengths), 6, 3)
    emissions_table[torch.arange(len(lengths)), 0, first] = 10.0
    optimizer = torch.optim.Adam(crf.parameters(), lr=0.1)
    for _ in range(100):
        optimizer.zero_grad()
        loss = crf(emissions_table, tags.masked_fill(~mask, IGNORE_INDEX), mask)
        loss.backward()
        optimizer.step()
    assert loss.item() < 0.1
    assert crf.decode(emissions_table, mask).tolist() == tags.masked_fill(~mask, IGNORE_INDEX).tolist()


def test_constraint_buffers_are_finite_and_shapes_are_checked() -> None:
    crf = LinearChainCRF(3, allowed_transitions(["O", "B-X", "I-X"], "IOB2"))
    for bias in (crf.start_bias, crf.transition_bias, crf.end_bias):
        assert torch.isfinite(bias).all()
    assert crf.transition_bias[0, 2] < -1e3 and crf.start_bias[2] < -1e3  # O -> I-X, I-X first
    assert {name for name, _ in crf.named_parameters()} == {"start_transitions", "transitions", "end_transitions"}
    with pytest.raises(ValueError, match="constraints"):
        LinearChainCRF(4, allowed_transitions(["O", "B-X", "I-X"], "IOB2"))
