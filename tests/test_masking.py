"""rnnlab.masking: lengths -> mask, and reversing each sequence within its own length."""

from __future__ import annotations

import pytest
import torch

from rnnlab.masking import lengths_to_mask, reverse_padded

# -- lengths_to_mask -------------------------------------------------------------------------


def test_lengths_to_mask_matches_hand_written_mask() -> None:
    mask = lengths_to_mask(torch.tensor([3, 1, 4, 2]))
    expected = torch.tensor(
        [
            [True, True, True, False],
            [True, False, False, False],
            [True, True, True, True],
            [True, True, False, False],
        ]
    )
    assert mask.dtype == torch.bool
    assert torch.equal(mask, expected)


def test_lengths_to_mask_defaults_to_longest_length() -> None:
    assert lengths_to_mask(torch.tensor([2, 5, 3])).shape == (3, 5)


def test_lengths_to_mask_pads_to_max_len_beyond_longest() -> None:
    mask = lengths_to_mask(torch.tensor([2, 1]), max_len=4)
    assert mask.shape == (2, 4)
    assert torch.equal(mask, torch.tensor([[True, True, False, False], [True, False, False, False]]))


def test_lengths_to_mask_row_sums_are_the_lengths() -> None:
    generator = torch.Generator().manual_seed(0)
    lengths = torch.randint(1, 30, (50,), generator=generator)
    mask = lengths_to_mask(lengths)
    assert torch.equal(mask.sum(dim=1), lengths)
    # Valid steps form a prefix: once a row turns False it stays False.
    assert torch.equal(mask, mask.cummin(dim=1).values)


def test_lengths_to_mask_single_example_full_length() -> None:
    assert torch.equal(lengths_to_mask(torch.tensor([3])), torch.ones(1, 3, dtype=torch.bool))


# -- reverse_padded --------------------------------------------------------------------------

LENGTHS = torch.tensor([4, 1, 3, 6])
STEPS = 6


def ramp(batch: int = len(LENGTHS), steps: int = STEPS) -> torch.Tensor:
    """x[b, t] = 100 * b + t, so every element says where it came from."""
    return (100 * torch.arange(batch).unsqueeze(1) + torch.arange(steps).unsqueeze(0)).float()


def test_reverse_padded_2d_matches_hand_written_result() -> None:
    x = ramp()
    out = reverse_padded(x, LENGTHS)
    expected = torch.tensor(
        [
            [3, 2, 1, 0, 4, 5],
            [100, 101, 102, 103, 104, 105],
            [202, 201, 200, 203, 204, 205],
            [305, 304, 303, 302, 301, 300],
        ],
        dtype=torch.float,
    )
    assert torch.equal(out, expected)


def test_reverse_padded_reverses_valid_steps_and_keeps_padding() -> None:
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(len(LENGTHS), STEPS, generator=generator)
    out = reverse_padded(x, LENGTHS)
    for b, length in enumerate(LENGTHS.tolist()):
        assert torch.equal(out[b, :length], x[b, :length].flip(0))
        assert torch.equal(out[b, length:], x[b, length:])


def test_reverse_padded_3d_moves_whole_feature_vectors() -> None:
    generator = torch.Generator().manual_seed(2)
    x = torch.randn(len(LENGTHS), STEPS, 5, generator=generator)
    out = reverse_padded(x, LENGTHS)
    assert out.shape == x.shape
    for b, length in enumerate(LENGTHS.tolist()):
        assert torch.equal(out[b, :length], x[b, :length].flip(0))
        assert torch.equal(out[b, length:], x[b, length:])


def test_reverse_padded_4d() -> None:
    x = torch.randn(len(LENGTHS), STEPS, 2, 3)
    out = reverse_padded(x, LENGTHS)
    for b, length in enumerate(LENGTHS.tolist()):
        assert torch.equal(out[b, :length], x[b, :length].flip(0))
        assert torch.equal(out[b, length:], x[b, length:])


@pytest.mark.parametrize("shape", [(STEPS,), (STEPS, 3)], ids=["2d", "3d"])
def test_reverse_padded_is_an_involution(shape: tuple[int, ...]) -> None:
    x = torch.randn(len(LENGTHS), *shape)
    once = reverse_padded(x, LENGTHS)
    assert not torch.equal(once, x)
    assert torch.equal(reverse_padded(once, LENGTHS), x)


def test_reverse_padded_full_lengths_is_flip() -> None:
    x = torch.randn(3, STEPS, 2)
    assert torch.equal(reverse_padded(x, torch.full((3,), STEPS)), x.flip(1))


def test_reverse_padded_length_one_is_identity() -> None:
    x = torch.randn(3, STEPS)
    assert torch.equal(reverse_padded(x, torch.ones(3, dtype=torch.long)), x)


def test_reverse_padded_keeps_dtype_and_integer_inputs() -> None:
    x = torch.arange(12).view(2, 6)
    out = reverse_padded(x, torch.tensor([6, 2]))
    assert out.dtype == x.dtype
    assert out.tolist() == [[5, 4, 3, 2, 1, 0], [7, 6, 8, 9, 10, 11]]


def test_reverse_padded_does_not_modify_its_input() -> None:
    x = ramp()
    before = x.clone()
    reverse_padded(x, LENGTHS)
    assert torch.equal(x, before)


def test_reverse_padded_propagates_gradients_to_the_right_positions() -> None:
    x = torch.zeros(1, 4, requires_grad=True)
    weights = torch.tensor([[1.0, 2.0, 3.0, 4.0]])
    (reverse_padded(x, torch.tensor([3])) * weights).sum().backward()
    # out[0] = x[2], out[1] = x[1], out[2] = x[0], out[3] = x[3]
    assert x.grad.tolist() == [[3.0, 2.0, 1.0, 4.0]]
