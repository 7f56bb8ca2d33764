"""The forecaster's tensor code: baselines (seasonal naive exact on a periodic series), error
metrics, units, the direct and autoregressive strategies, teacher forcing, configuration errors."""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch

from rnnlab.errors import UserError
from rnnlab.tasks.forecast_metrics import ForecastErrors, baseline_forecasts
from rnnlab.tasks.forecasting import Forecaster

LOOKBACK, HORIZON, PERIOD = 8, 3, 4
SPEC: dict[str, Any] = {
    "task": "forecasting",
    "input": {"kind": "features", "num_features": 2},
    "columns": ["a", "b"],
    "targets": ["a"],
    "target_index": [0],
    "lookback": LOOKBACK,
    "horizon": HORIZON,
    "scaler": {"mean": [1.0, 2.0], "std": [2.0, 1.0]},
    "baselines": ["naive", "seasonal_naive"],
    "seasonal_period": PERIOD,
    "target_mean": None,
}
BACKBONE = {"_target_": "rnnlab.backbones.RecurrentBackbone", "cell": "gru", "hidden_size": 8, "bidirectional": False}
DECODER = {"_target_": "rnnlab.backbones.RecurrentBackbone", "cell": "lstm", "hidden_size": 8, "bidirectional": False}
ADAM = {"_target_": "torch.optim.Adam", "lr": 0.01}


def make(**options: Any) -> Forecaster:
    torch.manual_seed(0)
    return Forecaster({**SPEC, **options.pop("spec", {})}, BACKBONE, ADAM, **options).eval()


def periodic(length: int, period: int) -> torch.Tensor:
    return torch.tensor([math.sin(2 * math.pi * t / period) + 0.1 * (t % period) for t in range(length)])


def test_seasonal_naive_is_exact_on_a_periodic_series() -> None:
    series = periodic(LOOKBACK + 7, PERIOD)
    history = series[:LOOKBACK].view(1, LOOKBACK, 1)
    truth = series[LOOKBACK : LOOKBACK + 7].view(1, 7, 1)
    forecasts = baseline_forecasts(history, truth, ["naive", "seasonal_naive"], PERIOD, None)
    torch.testing.assert_close(forecasts["seasonal_naive"], truth)
    torch.testing.assert_close(forecasts["naive"], history[:, -1:].expand(1, 7, 1))


def test_errors_mase_and_skill_are_relative_to_the_baselines() -> None:
    truth = torch.zeros(2, 2, 1)
    forecast = torch.full((2, 2, 1), 1.0)
    baselines = {"naive": torch.full((2, 2, 1), 2.0), "seasonal_naive": torch.full((2, 2, 1), -4.0)}
    errors = ForecastErrors(["naive", "seasonal_naive"])
    errors.update(forecast, truth, baselines)
    values = errors.compute()
    assert values["mae"] == pytest.approx(1.0) and values["rmse"] == pytest.approx(1.0)
    assert values["mae_naive"] == pytest.approx(2.0) and values["mae_seasonal_naive"] == pytest.approx(4.0)
    assert values["mase"] == pytest.approx(0.25)
    assert values["skill"] == pytest.approx(0.5) and values["beats_baselines"] == 1.0
    errors.update(torch.full((2, 2, 1), 3.0), truth, baselines)  # now worse than naive, better than seasonal
    assert errors.compute()["beats_baselines"] == 0.0


def test_mean_baseline_skill_uses_squared_errors() -> None:
    errors = ForecastErrors(["mean"])
    truth = torch.tensor([[[1.0]], [[3.0]]])
    errors.update(torch.tensor([[[1.5]], [[2.5]]]), truth, baseline_forecasts(None, truth, ["mean"], None, torch.tensor([2.0])))
    values = errors.compute()
    assert values["mse_mean"] == pytest.approx(1.0) and values["mse"] == pytest.approx(0.25)
    assert values["skill"] == pytest.approx(0.75)


@pytest.mark.parametrize("strategy", ["direct", "autoregressive"])
def test_a_relative_forecaster_with_a_silent_head_is_the_naive_forecast(strategy: str) -> None:
    model = make(strategy=strategy, decoder=DECODER)
    with torch.no_grad():
        for parameter in model.head.projection.parameters():
            parameter.zero_()
        inputs = torch.randn(4, LOOKBACK, 2)
        forecast = model(inputs, torch.full((4,), LOOKBACK))
    assert forecast.shape == (4, HORIZON, 1)
    torch.testing.assert_close(forecast, inputs[:, -1:, :1].expand(4, HORIZON, 1))
    torch.testing.assert_close(model.to_original(forecast[:, :1, 0:1]), inputs[:, -1:, :1] * 2.0 + 1.0)


def test_autoregressive_teacher_forcing_reads_the_truth_only_when_asked() -> None:
    model = make(strategy="autoregressive", decoder=DECODER)
    inputs = torch.randn(3, LOOKBACK, 2)
    lengths = torch.full((3,), LOOKBACK)
    targets, other = torch.randn(3, HORIZON, 1), torch.randn(3, HORIZON, 1)
    with torch.no_grad():
        free = model(inputs, lengths)
        torch.testing.assert_close(model(inputs, lengths, targets, teacher_forcing=0.0), free)
        forced = model(inputs, lengths, targets, teacher_forcing=1.0)
        torch.testing.assert_close(forced[:, 0], free[:, 0])  # the first step reads the last observation
        assert not torch.allclose(forced[:, 1:], model(inputs, lengths, other, teacher_forcing=1.0)[:, 1:])


def test_targets_that_are_not_inputs_start_from_zero_and_are_not_relative() -> None:
    spec = {"target_index": None, "targets": ["sum"], "scaler": None, "baselines": ["mean"], "seasonal_period": None, "target_mean": [1.0], "horizon": 1}
    model = make(spec=spec)
    assert not model.relative
    with torch.no_grad():
        assert model(torch.randn(2, LOOKBACK, 2), torch.full((2,), LOOKBACK)).shape == (2, 1, 1)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"strategy": "recursive"}, "model.strategy"),
        ({"loss": "huber"}, "model.loss"),
        ({"strategy": "autoregressive", "decoder": None}, "model/decoder"),
        ({"strategy": "autoregressive", "decoder": {**DECODER, "bidirectional": True}}, "bidirectional=false"),
        ({"spec": {"task": "classification"}}, "forecasting data"),
    ],
)
def test_bad_options_are_user_errors(options: dict[str, Any], message: str) -> None:
    with pytest.raises(UserError, match=message):
        make(**options)
