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
    """Stop training at the first non-finite training loss and remember where it happened."""

    def __init__(self) -> None:
        self.diverged_at_step: int | None = None

    @property
    def diverged(self) -> bool:
        return self.diverged_at_step is not None

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int) -> None:
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs
        if isinstance(loss, torch.Tensor) and not torch.isfinite(loss).all():
            self.diverged_at_step = trainer.global_step
            trainer.should_stop = True
