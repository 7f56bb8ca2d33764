"""Callbacks that rnnlab-train always adds: what metrics.json reports about the run."""

from __future__ import annotations

import math
from typing import Any

import lightning as L
import torch


class BestValidationMetrics(L.Callback):
    """Keep every ``val/*`` metric of the epoch where ``monitor`` was best (as ModelCheckpoint picks it)."""

    def __init__(self, monitor: str, mode: str) -> None:
        self.monitor = monitor
        self.mode = mode
        self.best: dict[str, float] = {}
        self.best_epoch: int | None = None

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking or self.monitor not in trainer.callback_metrics:
            return
        value = float(trainer.callback_metrics[self.monitor])
        if math.isnan(value):
            return
        current = self.best.get(self.monitor)
        if current is None or (value < current if self.mode == "min" else value > current):
            self.best = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("val/")}
            self.best_epoch = trainer.current_epoch

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best, "best_epoch": self.best_epoch}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.best = dict(state_dict["best"])
        self.best_epoch = state_dict["best_epoch"]


class DivergenceMonitor(L.Callback):
    """Stop training at the first non-finite training loss and remember where it happened.

    On a GPU each step's check is read one step later (and at the end of each epoch and of
    training), so that reading it never makes the host wait for the step's kernels: the next
    step's work is queued by then. The step it reports is still the one whose loss diverged.
    """

    def __init__(self) -> None:
        self.diverged_at_step: int | None = None
        self._pending: tuple[torch.Tensor, int] | None = None  # (finite flag on the device, step)

    @property
    def diverged(self) -> bool:
        return self.diverged_at_step is not None

    def _read_pending(self, trainer: L.Trainer) -> None:
        pending, self._pending = self._pending, None
        if pending is not None and self.diverged_at_step is None and not bool(pending[0]):
            self.diverged_at_step = pending[1]
            trainer.should_stop = True

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int) -> None:
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs
        self._read_pending(trainer)
        if isinstance(loss, torch.Tensor):
            self._pending = (torch.isfinite(loss.detach()).all(), trainer.global_step)
            if loss.device.type == "cpu":
                self._read_pending(trainer)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._read_pending(trainer)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._read_pending(trainer)
