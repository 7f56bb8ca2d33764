"""Heads: padding-aware SequencePooling and ClassificationHead, alone and on top of a real backbone."""

from __future__ import annotations

import pytest
import torch

from rnnlab.backbones import RecurrentBackbone
from rnnlab.errors import UserError
from rnnlab.heads import POOLINGS, ClassificationHead, SequencePooling
from rnnlab.masking import lengths_to_mask

ATOL = 1e-6
DIM = 6
# Mixed lengths including 1 and the full length; the longest sets T.
LENGTHS = torch.tensor([5, 1, 3, 7, 2])
STEPS = int(LENGTHS.max())


def make_pooling(method: str, num_directions: int = 1, seed: int = 0) -> SequencePooling:
    torch.manual_seed(seed)
    return SequencePooling(method, DIM, num_directions).eval()


def padded_outputs(
    lengths: torch.Tensor = LENGTHS, garbage: float = 1e4, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Encoder-like outputs (B, T, D) with big garbage at padded steps, and the mask."""
    generator = torch.Generator().manual_seed(seed)
    mask = lengths_to_mask(lengths, int(lengths.max()))
    x = torch.randn(len(lengths), int(lengths.max()), DIM, generator=generator)
    noise = garbage * torch.randn(x.shape, generator=generator).abs()  # large and positive: max would pick it
    return torch.where(mask.unsqueeze(-1), x, noise), mask


# -- SequencePooling -------------------------------------------------------------------------


@pytest.mark.parametrize("num_directions", [1, 2])
@pytest.mark.parametrize("method", POOLINGS)
def test_pooling_of_padded_batch_equals_pooling_each_sequence_alone(method: str, num_directions: int) -> None:
    pool = make_pooling(method, num_directions)
    outputs, mask = padded_outputs()
    with torch.no_grad():
        pooled = pool(outputs, mask)
        assert pooled.shape == (len(LENGTHS), DIM)
        for b, length in enumerate(LENGTHS.tolist()):
            alone = pool(outputs[b : b + 1, :length], torch.ones(1, length, dtype=torch.bool))
            torch.testing.assert_close(pooled[b : b + 1], alone, atol=ATOL, rtol=0)


@pytest.mark.parametrize("num_directions", [1, 2])
@pytest.mark.parametrize("method", POOLINGS)
def test_pooling_ignores_values_at_padded_steps(method: str, num_directions: int) -> None:
    pool = make_pooling(method, num_directions)
    clean, mask = padded_outputs(garbage=0.0)
    dirty = clean.clone()
    dirty[~mask] = torch.tensor([1e6, -1e6, 3e5, -7.0, 1e3, 42.0])
    with torch.no_grad():
        torch.testing.assert_close(pool(dirty, mask), pool(clean, mask), atol=ATOL, rtol=0)


@pytest.mark.parametrize("method", POOLINGS)
def test_pooling_ignores_extra_padding_columns(method: str) -> None:
    """Padding the same batch to a longer T (more padded steps) changes nothing."""
    pool = make_pooling(method)
    outputs, mask = padded_outputs()
    longer = torch.cat([outputs, 5e3 * torch.ones(len(LENGTHS), 4, DIM)], dim=1)
    longer_mask = lengths_to_mask(LENGTHS, STEPS + 4)
    with torch.no_grad():
        torch.testing.assert_close(pool(longer, longer_mask), pool(outputs, mask), atol=ATOL, rtol=0)


def test_last_unidirectional_takes_the_last_valid_step() -> None:
    outputs, mask = padded_outputs()
    pooled = make_pooling("last")(outputs, mask)
    for b, length in enumerate(LENGTHS.tolist()):
        assert torch.equal(pooled[b], outputs[b, length - 1])


def test_last_bidirectional_takes_forward_at_last_step_and_backward_at_step_zero() -> None:
    # D = 4 = 2 directions x H 2; each value encodes (batch, step, feature) so we can tell where it came from.
    lengths = torch.tensor([3, 1, 4])
    batch, steps, dim = 3, 4, 4
    b = torch.arange(batch).view(batch, 1, 1)
    t = torch.arange(steps).view(1, steps, 1)
    f = torch.arange(dim).view(1, 1, dim)
    outputs = (100 * b + 10 * t + f).float()
    mask = lengths_to_mask(lengths, steps)
    pooled = SequencePooling("last", dim, num_directions=2)(outputs, mask)
    expected = torch.tensor(
        [
            # forward half (features 0, 1) at step len-1; backward half (features 2, 3) at step 0
            [20.0, 21.0, 2.0, 3.0],  # length 3 -> step 2
            [100.0, 101.0, 102.0, 103.0],  # length 1 -> step 0 for both halves
            [230.0, 231.0, 202.0, 203.0],  # length 4 -> step 3
        ]
    )
    assert torch.equal(pooled, expected)


def test_last_bidirectional_differs_from_unidirectional() -> None:
    outputs, mask = padded_outputs()
    uni = make_pooling("last", 1)(outputs, mask)
    bi = make_pooling("last", 2)(outputs, mask)
    half = DIM // 2
    torch.testing.assert_close(bi[:, :half], uni[:, :half])
    torch.testing.assert_close(bi[:, half:], outputs[:, 0, half:])
    # Sequences longer than 1 have a different backward half.
    assert not torch.allclose(bi[LENGTHS > 1, half:], uni[LENGTHS > 1, half:])


def test_mean_matches_hand_computation_over_valid_steps() -> None:
    outputs, mask = padded_outputs()
    pooled = make_pooling("mean")(outputs, mask)
    for b, length in enumerate(LENGTHS.tolist()):
        expected = sum(outputs[b, t] for t in range(length)) / length
        torch.testing.assert_close(pooled[b], expected, atol=ATOL, rtol=0)


def test_max_matches_hand_computation_over_valid_steps() -> None:
    outputs, mask = padded_outputs()
    outputs = -outputs.abs() - 1.0  # all valid values negative: a 0 leaking in from padding would win
    pooled = make_pooling("max")(outputs, mask)
    for b, length in enumerate(LENGTHS.tolist()):
        for d in range(DIM):
            assert pooled[b, d].item() == max(outputs[b, t, d].item() for t in range(length))


def test_attention_of_constant_sequence_is_that_constant() -> None:
    """Whatever the weights, a convex combination of identical valid vectors is that vector."""
    pool = make_pooling("attention", seed=3)
    vector = torch.randn(DIM)
    outputs, mask = padded_outputs()
    outputs = torch.where(mask.unsqueeze(-1), vector.expand_as(outputs), outputs)
    with torch.no_grad():
        pooled = pool(outputs, mask)
    torch.testing.assert_close(pooled, vector.expand(len(LENGTHS), DIM), atol=1e-5, rtol=0)


def test_attention_with_flat_scores_is_the_mean() -> None:
    pool = make_pooling("attention")
    with torch.no_grad():
        pool.scorer[-1].weight.zero_()  # every step scores 0 -> uniform weights over valid steps
        outputs, mask = padded_outputs()
        torch.testing.assert_close(pool(outputs, mask), make_pooling("mean")(outputs, mask), atol=ATOL, rtol=0)


def test_attention_is_trainable_and_gets_no_gradient_from_padding() -> None:
    pool = make_pooling("attention")
    assert sum(p.numel() for p in pool.parameters()) > 0
    outputs, mask = padded_outputs(garbage=0.0)
    outputs.requires_grad_(True)
    pool(outputs, mask).sum().backward()
    assert torch.all(outputs.grad[~mask] == 0)
    assert all(p.grad is not None for p in pool.parameters())


@pytest.mark.parametrize("method", ["last", "mean", "max"])
def test_parameter_free_poolings_have_no_parameters(method: str) -> None:
    assert list(make_pooling(method).parameters()) == []


def test_unknown_pooling_raises_user_error_listing_choices() -> None:
    with pytest.raises(UserError) as info:
        SequencePooling("median", DIM)
    message = str(info.value)
    assert "median" in message
    for choice in POOLINGS:
        assert choice in message


# -- ClassificationHead ----------------------------------------------------------------------


@pytest.mark.parametrize("num_directions", [1, 2])
@pytest.mark.parametrize("method", POOLINGS)
def test_classification_head_output_shape(method: str, num_directions: int) -> None:
    head = ClassificationHead(DIM, num_classes=3, pooling=method, num_directions=num_directions, dropout=0.5)
    outputs, mask = padded_outputs()
    logits = head.eval()(outputs, mask)
    assert logits.shape == (len(LENGTHS), 3)
    assert torch.isfinite(logits).all()


def test_classification_head_unknown_pooling_is_user_error() -> None:
    with pytest.raises(UserError, match="model.pooling"):
        ClassificationHead(DIM, 3, pooling="sum")


# -- end to end: backbone + head -------------------------------------------------------------

VOCAB, PAD = 20, 0
HIDDEN = 8


@pytest.mark.parametrize("impl", ["fused", "reference"])
@pytest.mark.parametrize("method", POOLINGS)
def test_backbone_and_head_logits_are_padding_invariant(method: str, impl: str) -> None:
    torch.manual_seed(0)
    backbone = RecurrentBackbone(
        cell="lstm",
        hidden_size=HIDDEN,
        bidirectional=True,
        embedding_dim=5,
        vocab_size=VOCAB,
        padding_idx=PAD,
        impl=impl,
    ).eval()
    head = ClassificationHead(backbone.output_size, 4, method, backbone.num_directions, dropout=0.3).eval()
    generator = torch.Generator().manual_seed(1)
    tokens = torch.randint(1, VOCAB, (len(LENGTHS), STEPS), generator=generator)
    mask = lengths_to_mask(LENGTHS, STEPS)
    padded = tokens.masked_fill(~mask, PAD)

    with torch.no_grad():
        outputs, _ = backbone(padded, LENGTHS)
        logits = head(outputs, mask)
        # Real tokens (not pad) at padded steps must not matter either.
        outputs_dirty, _ = backbone(tokens, LENGTHS)
        torch.testing.assert_close(head(outputs_dirty, mask), logits, atol=ATOL, rtol=0)
        for b, length in enumerate(LENGTHS.tolist()):
            alone_outputs, _ = backbone(tokens[b : b + 1, :length], LENGTHS[b : b + 1])
            alone = head(alone_outputs, torch.ones(1, length, dtype=torch.bool))
            torch.testing.assert_close(logits[b : b + 1], alone, atol=ATOL, rtol=0)
