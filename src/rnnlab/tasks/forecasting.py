"""Forecasting (N vs 1 and N vs M on real values): an input window (B, L, F) -> the next ``horizon``
values of the K target columns (B, H, K).

``strategy=direct``: one linear head emits every horizon step from the encoder's summary.
``strategy=autoregressive``: a recurrent decoder, started from the encoder's final state through a
learned bridge, emits one step at a time and reads its own previous prediction (teacher forcing
while training, scheduled like seq2seq's). ``relative``: predict the change from the last
observed value of each target instead of the value itself (helps series with a trend).

Loss (``mse`` or ``mae``) on normalised values. Metrics in original units, next to the data's
baselines on the same windows (:mod:`rnnlab.tasks.forecast_metrics`): ``mae``, ``rmse``, ``mse``,
``mase`` (vs seasonal naive), ``skill`` and ``beats_baseline``, and each baseline's errors.
TensorBoard gets a figure of history, truth and forecast for a few fixed validation windows.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from rnnlab.batch import Batch
from rnnlab.data.series import denormalize
from rnnlab.errors import UserError, check_choice
from rnnlab.heads.regression import AutoregressiveForecastDecoder, DirectForecastHead
from rnnlab.heads.seq2seq import Bridge, top_layer
from rnnlab.tasks.base import RecurrentTask, build_backbone
from rnnlab.tasks.forecast_metrics import ForecastErrors, baseline_forecasts
from rnnlab.tasks.media import forecast_figure, log_figure
from rnnlab.tasks.seq2seq import TEACHER_FORCING_DEFAULTS, teacher_forcing_ratio

STRATEGIES: tuple[str, ...] = ("direct", "autoregressive")
LOSSES = {"mse": F.mse_loss, "mae": F.l1_loss}


class Forecaster(RecurrentTask):
    """Encoder ``backbone`` over the input window -> ``direct`` head or ``autoregressive`` ``decoder``
    (a unidirectional rnn/lstm/gru config over the target values).

    ``data_spec`` comes from a forecasting data module (:mod:`rnnlab.data.series`): columns,
    targets, lookback, horizon, the training scaler and the baselines.
    """

    metric_modes: ClassVar[dict[str, str]] = {
        "loss": "min", "mae": "min", "rmse": "min", "mse": "min", "mase": "min", "skill": "max",
    }
    default_monitor: ClassVar[str] = "val/mae"
    data_task: ClassVar[str] = "forecasting"
    data_choices: ClassVar[str] = "data=series_csv, sunspots, airline or adding"

    def __init__(
        self,
        data_spec: dict[str, Any],
        backbone: dict[str, Any],
        optimizer: dict[str, Any],
        scheduler: dict[str, Any] | None = None,
        strategy: str = "direct",
        decoder: dict[str, Any] | None = None,
        loss: str = "mse",
        relative: bool = True,
        head_dropout: float = 0.0,
        teacher_forcing: dict[str, Any] | None = None,
        logged_windows: int = 3,
    ) -> None:
        self.check_data(data_spec)
        check_choice("model.strategy", strategy, STRATEGIES)
        check_choice("model.loss", loss, tuple(LOSSES))
        if strategy == "autoregressive" and not decoder:
            raise UserError("model.strategy=autoregressive needs a decoder: select it with model/decoder=lstm (or gru, rnn)")
        super().__init__(data_spec, backbone, optimizer, scheduler)
        self.save_hyperparameters(logger=False)
        self.horizon = int(data_spec["horizon"])
        self.targets: list[str] = list(data_spec["targets"])
        target_index = data_spec.get("target_index")
        # Without the targets among the inputs (e.g. the adding problem) there is no last value to start from.
        self.target_index = list(target_index) if target_index is not None else None
        self.relative = relative and self.target_index is not None
        self.loss_name = loss
        self.teacher_forcing = {**TEACHER_FORCING_DEFAULTS, **(teacher_forcing or {})}
        self.logged_windows = logged_windows
        target_mean = data_spec.get("target_mean")
        self.register_buffer("target_mean", torch.tensor(target_mean) if target_mean is not None else torch.zeros(0), persistent=False)
        self.baselines: list[str] = list(data_spec["baselines"])
        self.seasonal_period = data_spec.get("seasonal_period")
        num_targets = len(self.targets)
        encoder = self.backbone
        if strategy == "direct":
            self.head: nn.Module = DirectForecastHead(encoder.output_size, self.horizon, num_targets, head_dropout)
            self.bridge = None
        else:
            if decoder.get("bidirectional", False):
                raise UserError("the decoder forecasts left to right: set model.decoder.bidirectional=false")
            rnn = build_backbone(decoder, {"kind": "features", "num_features": num_targets})
            self.bridge = Bridge(encoder.state_size, rnn.num_layers, rnn.hidden_size, rnn.cell == "lstm")
            self.head = AutoregressiveForecastDecoder(rnn, num_targets, head_dropout)
        self.strategy = strategy
        self.errors = nn.ModuleDict({f"{stage}_errors": ForecastErrors(self.baselines) for stage in ("val", "test")})
        self._windows: list[dict[str, torch.Tensor]] = []

    # -- units -----------------------------------------------------------------------------------

    def to_original(self, values: torch.Tensor) -> torch.Tensor:
        """Normalised target values (..., K) -> original units (unchanged when the data has no scaler)."""
        return denormalize(values, self.data_spec, self.target_index)

    # -- model -----------------------------------------------------------------------------------

    def forward(self, inputs: torch.Tensor, lengths: torch.Tensor, targets: torch.Tensor | None = None, teacher_forcing: float = 0.0) -> torch.Tensor:
        """inputs (B, L, F) normalised, lengths (B,) -> forecast (B, H, K), normalised."""
        outputs, final = self.backbone(inputs, lengths)
        last = inputs[:, -1, self.target_index] if self.target_index is not None else None  # (B, K)
        if self.strategy == "direct":
            forecast = self.head(top_layer(final, self.backbone.num_directions))
        else:
            start = last if last is not None else inputs.new_zeros(inputs.shape[0], len(self.targets))
            # The decoder reads (and the teacher gives) changes when relative, values otherwise.
            teacher = None if targets is None else (targets - last.unsqueeze(1) if self.relative else targets)
            first = torch.zeros_like(start) if self.relative else start
            forecast = self.head(self.bridge(final), first, self.horizon, teacher, teacher_forcing)
        return forecast + last.unsqueeze(1) if self.relative else forecast

    def probe_loss(self, batch: Batch) -> torch.Tensor:
        return LOSSES[self.loss_name](self(batch.inputs, batch.on_host.lengths, batch.targets), batch.targets)

    def compute(self, batch: Batch, stage: str) -> torch.Tensor:
        ratio = 0.0
        if stage == "train" and self.strategy == "autoregressive":
            ratio = teacher_forcing_ratio(self.teacher_forcing, self.current_epoch)
            self.log_epoch_value("train/teacher_forcing", ratio)
        forecast = self(batch.inputs, batch.on_host.lengths, batch.targets, ratio)
        loss = LOSSES[self.loss_name](forecast, batch.targets)
        if stage != "train":
            self._update_errors(batch, forecast, stage)
        return loss

    def _update_errors(self, batch: Batch, forecast: torch.Tensor, stage: str) -> None:
        predicted, truth = self.to_original(forecast), self.to_original(batch.targets)
        history = self.to_original(batch.inputs[:, :, self.target_index]) if self.target_index is not None else None
        baselines = baseline_forecasts(history, truth, self.baselines, self.seasonal_period, self.target_mean)
        self.errors[f"{stage}_errors"].update(predicted, truth, baselines)
        if stage == "val" and history is not None:
            index = batch.on_host.extras["index"]  # rows picked on the host: only batches holding a logged window copy
            rows = (index < self.logged_windows).nonzero().flatten().tolist()
            if rows:
                kept = (history[rows].cpu(), truth[rows].cpu(), predicted[rows].detach().cpu())
                for row, (past, future, forecast) in zip(rows, zip(*kept), strict=True):
                    self._windows.append({"index": int(index[row]), "history": past, "truth": future, "forecast": forecast})

    # -- epoch ends --------------------------------------------------------------------------------

    def on_validation_epoch_end(self) -> None:
        self._log_errors("val")
        windows, self._windows = sorted(self._windows, key=lambda w: w["index"]), []
        if self.trainer.sanity_checking:
            return
        for window in windows:
            figure = forecast_figure(window["history"], window["truth"], window["forecast"], self.targets)
            log_figure(self.loggers, f"val/forecast/{window['index']}", figure, self.global_step)

    def on_test_epoch_end(self) -> None:
        self._log_errors("test")

    def _log_errors(self, stage: str) -> None:
        errors = self.errors[f"{stage}_errors"]
        if not errors.update_called:
            return
        for name, value in errors.compute().items():
            self.log(f"{stage}/{name}", value)
        errors.reset()

    # -- prediction --------------------------------------------------------------------------------

    def predict_step(self, batch: Batch, batch_idx: int = 0) -> list[dict[str, Any]]:
        """One record per history window: its ``index`` and the ``forecast`` per target column
        (``horizon`` values each, original units)."""
        forecast = self.to_original(self(batch.inputs, batch.on_host.lengths))
        return [
            {"index": int(index), "forecast": {name: forecast[row, :, k].tolist() for k, name in enumerate(self.targets)}}
            for row, index in enumerate(batch.on_host.extras["index"].tolist())
        ]
