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

    On a GPU each step's check is copied to the host asynchronously and read one step later (and
    at the end of each epoch and of training), so that reading it never makes the host wait for the
    step's kernels: reading a device tensor, even one computed long ago, waits for every kernel
    queued so far, while waiting for the copy's own event waits for nothing queued after it. The
    step it reports is still the one whose loss diverged.
    """

    def __init__(self) -> None:
        self.diverged_at_step: int | None = None
        # (finite flag on the host, the CUDA event its copy completes, or None: already there, step)
        self._pending: tuple[torch.Tensor, torch.cuda.Event | None, int] | None = None

    @property
    def diverged(self) -> bool:
        return self.diverged_at_step is not None

    def _read_pending(self, trainer: L.Trainer) -> None:
        pending, self._pending = self._pending, None
        if pending is None:
            return
        finite, copied, step = pending
        if copied is not None:
            copied.synchronize()
        if self.diverged_at_step is None and not bool(finite):
            self.diverged_at_step = step
            trainer.should_stop = True

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int) -> None:
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs
        self._read_pending(trainer)
        if not isinstance(loss, torch.Tensor):
            return
        finite = torch.isfinite(loss.detach()).all()
        if not finite.is_cuda:
            self._pending = (finite, None, trainer.global_step)
            self._read_pending(trainer)
            return
        host = torch.empty((), dtype=torch.bool, pin_memory=True)
        host.copy_(finite, non_blocking=True)
        copied = torch.cuda.Event()
        copied.record(torch.cuda.current_stream(finite.device))  # the stream the copy was queued on
        self._pending = (host, copied, trainer.global_step)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._read_pending(trainer)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._read_pending(trainer)
