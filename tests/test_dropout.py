"""rnnlab.dropout: the uniform-sample mask is dropout's distribution; torch's own where it draws fast."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

import rnnlab.dropout
from rnnlab.dropout import Dropout, dropout

SRC = Path(rnnlab.dropout.__file__).parent


@pytest.fixture
def uniform_draws(monkeypatch: pytest.MonkeyPatch) -> None:
    """The path this module takes on a CPU whose bernoulli_ draws element by element."""
    monkeypatch.setattr(rnnlab.dropout, "TORCH_DRAWS_VECTORISED", False)


@pytest.mark.parametrize("p", [0.1, 0.3, 0.5])
def test_each_element_is_dropped_with_probability_p_and_the_rest_scaled(uniform_draws: None, p: float) -> None:
    x = torch.rand(1000, 1000) + 0.5  # no zeros of its own
    y = dropout(x, p, training=True)
    dropped = y == 0
    # 1e6 draws: the share's standard deviation is under 5e-4.
    assert abs(dropped.double().mean().item() - p) < 5e-3
    torch.testing.assert_close(y[~dropped], x[~dropped] / (1 - p))


def test_gradient_is_the_mask_and_scale(uniform_draws: None) -> None:
    x = torch.randn(64, 32, requires_grad=True)
    y = dropout(x, 0.4, training=True)
    y.sum().backward()
    expected = torch.where(y == 0, 0.0, 1 / 0.6)
    torch.testing.assert_close(x.grad, expected)


def test_same_seed_same_mask(uniform_draws: None) -> None:
    x = torch.randn(16, 8, 4)
    torch.manual_seed(3)
    first = dropout(x, 0.5, training=True)
    torch.manual_seed(3)
    assert torch.equal(first, dropout(x, 0.5, training=True))


def test_identity_in_eval_and_at_p_zero_zeros_at_p_one(uniform_draws: None) -> None:
    x = torch.randn(8, 5)
    assert dropout(x, 0.5, training=False) is x
    assert torch.equal(dropout(x, 0.0, training=True), x)
    assert torch.equal(dropout(x, 1.0, training=True), torch.zeros_like(x))


def test_keeps_a_bfloat16_input_in_bfloat16(uniform_draws: None) -> None:
    x = torch.randn(100, 100).bfloat16()
    y = dropout(x, 0.25, training=True)
    assert y.dtype == torch.bfloat16
    assert abs((y == 0).float().mean().item() - 0.25) < 0.03


def test_module_follows_train_and_eval(uniform_draws: None) -> None:
    layer = Dropout(0.5)
    x = torch.ones(200, 200)
    assert (layer(x) == 0).any()
    layer.eval()
    assert torch.equal(layer(x), x)


def test_where_torch_draws_vectorised_it_is_torch_dropout(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(rnnlab.dropout, "TORCH_DRAWS_VECTORISED", True)
    x = torch.randn(32, 16)
    torch.manual_seed(5)
    ours = dropout(x, 0.3, training=True)
    torch.manual_seed(5)
    assert torch.equal(ours, F.dropout(x, 0.3, training=True))


def test_no_other_module_calls_torch_dropout_directly() -> None:
    """One dropout for the whole package: a new nn.Dropout / F.dropout would miss the fast mask."""
    pattern = re.compile(r"\bnn\.Dropout\(|\bF\.dropout\(")
    offenders = [str(path.relative_to(SRC)) for path in SRC.rglob("*.py") if path.name != "dropout.py" and pattern.search(path.read_text())]
    assert offenders == []
