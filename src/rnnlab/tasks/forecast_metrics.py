"""Forecast errors in original units, of the model and of the baselines on the same windows.

``mae``, ``rmse``, ``mse`` of the model; ``mae_<baseline>`` / ``rmse_<baseline>`` of each baseline
(naive: the last observed value; seasonal_naive: the value one season earlier; mean: the training
mean); ``mase`` = MAE / seasonal-naive MAE (below 1: better than the seasonal-naive forecast);
``skill`` = 1 - MAE / naive MAE (or 1 - MSE / mean MSE without a naive baseline), negative when
the model is worse than that baseline, and ``beats_baselines``: 1 when the model beats every
baseline, else 0, so a forecaster worse than a trivial forecast is plain in metrics.json.
States are sums (float64), so they sync across processes.
"""

from __future__ import annotations

import torch
from torchmetrics import Metric

BASELINES: tuple[str, ...] = ("naive", "seasonal_naive", "mean")


def baseline_forecasts(
    history: torch.Tensor | None,
    truth: torch.Tensor,
    baselines: list[str],
    seasonal_period: int | None,
    target_mean: torch.Tensor | None,
) -> dict[str, torch.Tensor]:
    """history (B, L, K) past target values (None when the targets are not inputs), truth (B, H, K),
    both in original units -> {baseline: forecast (B, H, K)}.

    naive repeats the last value; seasonal_naive repeats the last season: step h (1-based) takes
    the value at L - m + ((h - 1) mod m); mean is the training mean ``target_mean`` (K,).
    """
    forecasts = {}
    horizon = truth.shape[1]
    if "naive" in baselines:
        forecasts["naive"] = history[:, -1:].expand_as(truth)
    if "seasonal_naive" in baselines:
        steps = history.shape[1]
        positions = torch.tensor([steps - seasonal_period + h % seasonal_period for h in range(horizon)], device=history.device)
        forecasts["seasonal_naive"] = history[:, positions]
    if "mean" in baselines:
        forecasts["mean"] = target_mean.to(truth).expand_as(truth)
    return forecasts


class ForecastErrors(Metric):
    """Error sums of the forecast and of each baseline over every update since the last reset."""

    full_state_update = False

    def __init__(self, baselines: list[str]) -> None:
        super().__init__()
        self.baselines = list(baselines)
        for name in ["model", *self.baselines]:
            self.add_state(f"{name}_abs", torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
            self.add_state(f"{name}_sq", torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, forecast: torch.Tensor, truth: torch.Tensor, baselines: dict[str, torch.Tensor]) -> None:
        """forecast, truth (B, H, K) and each baseline's forecast (B, H, K), all in original units."""
        for name, values in {"model": forecast, **baselines}.items():
            error = (values.detach() - truth).double()
            setattr(self, f"{name}_abs", getattr(self, f"{name}_abs") + error.abs().sum())
            setattr(self, f"{name}_sq", getattr(self, f"{name}_sq") + error.square().sum())
        self.count += truth.numel()

    def compute(self) -> dict[str, torch.Tensor]:
        count = self.count.clamp(min=1).double()
        values = {}
        for name in ["model", *self.baselines]:
            suffix = "" if name == "model" else f"_{name}"
            mse = getattr(self, f"{name}_sq") / count
            values[f"mae{suffix}"] = getattr(self, f"{name}_abs") / count
            values[f"rmse{suffix}"] = mse.sqrt()
            values[f"mse{suffix}"] = mse
        if "seasonal_naive" in self.baselines:
            values["mase"] = values["mae"] / values["mae_seasonal_naive"]
        if "naive" in self.baselines:
            values["skill"] = 1.0 - values["mae"] / values["mae_naive"]
        elif "mean" in self.baselines:
            values["skill"] = 1.0 - values["mse"] / values["mse_mean"]
        # 1 only when the model beats every baseline (by MAE; by MSE against the mean).
        margins = [values[f"mae_{b}"] - values["mae"] if b != "mean" else values["mse_mean"] - values["mse"] for b in self.baselines]
        values["beats_baselines"] = torch.stack(margins).gt(0).all().double() if margins else torch.tensor(1.0, dtype=torch.float64)
        return {name: value.float() for name, value in values.items()}
