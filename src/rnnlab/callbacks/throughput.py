"""Throughput and resources while training, validating and testing.

Tags, per process (under DDP: rank 0's share):

    throughput/train_tokens_per_s      real (unpadded) input tokens per second of wall time, over the
                                       steps since the previous point (data loading included)
    throughput/train_sequences_per_s   sequences per second, likewise
    throughput/train_step_ms           mean time of one training batch's step (forward, backward, and
                                       the optimizer step where it happens)
    throughput/train_outside_step_share  share of the wall time spent outside the steps: loading
                                       and collating the next batch, logging, callbacks
    throughput/val_tokens_per_s, throughput/val_sequences_per_s      per validation run (decoding included)
    throughput/test_tokens_per_s, throughput/test_sequences_per_s    per test run
    throughput/startup_s               seconds from the start of the process (the command) to the end
                                       of its first training step: imports, data, model, Lightning's set-up
    resources/peak_rss_mib             the process's peak resident memory so far
    resources/cuda_max_allocated_mib   on a GPU: the most memory tensors have held so far

The padding ratio of each stage is the task's own ``<stage>/padding_ratio``. Points line up with
Lightning's own (``train/loss`` of the k-th optimizer step at x = k - 1). The time the opt-in probes
(rnnlab.callbacks.probing) take is left out of every number. On a GPU, only the window totals
are exact (the GPU is synchronised when a point is logged); the split between step time and
the rest follows wherever the host next waits for the GPU.
"""

from __future__ import annotations

import os
import resource
import sys
import time
from pathlib import Path
from typing import Any

import lightning as L
import torch

from rnnlab.batch import Batch
from rnnlab.callbacks.gradients import check_every, logging_due
from rnnlab.tasks.media import log_scalars


def resident_kib(field: str) -> int:
    """A ``kB`` field of /proc/self/status (Linux): VmRSS, the resident set size now, or VmHWM, its peak."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise OSError(f"no {field} in /proc/self/status")


def peak_memory(device: torch.device) -> dict[str, float]:
    """Peak resident memory of this process, and the CUDA allocator's peak on a GPU, in MiB.

    On Linux the peak is VmHWM: getrusage's ru_maxrss survives exec, so a run started from a larger
    process (a notebook, a sweep driver, a benchmark) would report that process's peak as its own."""
    try:
        peak_mib = resident_kib("VmHWM") / 2**10
    except OSError:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
        peak_mib = peak / 2**20 if sys.platform == "darwin" else peak / 2**10
    values = {"resources/peak_rss_mib": peak_mib}
    if device.type == "cuda":
        values["resources/cuda_max_allocated_mib"] = torch.cuda.max_memory_allocated(device) / 2**20
    return values


def process_age() -> float | None:
    """Seconds since this process started (Linux: /proc, to 10 ms), or None where unknown."""
    try:
        # Field 22 of /proc/self/stat, the start time in clock ticks since boot; the command name
        # in parentheses may contain spaces, so count from its closing parenthesis (fields 3..).
        started = int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19]) / os.sysconf("SC_CLK_TCK")
        return float(Path("/proc/uptime").read_text().split()[0]) - started
    except (OSError, ValueError, IndexError):
        return None


def synchronize(device: torch.device) -> None:
    """Wait for queued GPU work, so that a wall-clock reading covers it."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class Counter:
    """Tokens and sequences since ``start``, counted on the host batch (no wait for a GPU)."""

    def __init__(self) -> None:
        self.start = time.perf_counter()
        self.tokens = 0
        self.sequences = 0
        self.step_seconds = 0.0
        self.steps = 0

    def add(self, batch: Any) -> None:
        if isinstance(batch, Batch):
            self.tokens += int(batch.on_host.lengths.sum())
            self.sequences += len(batch)

    def rates(self, stage: str) -> dict[str, float]:
        elapsed = max(time.perf_counter() - self.start, 1e-9)
        return {
            f"throughput/{stage}_tokens_per_s": self.tokens / elapsed,
            f"throughput/{stage}_sequences_per_s": self.sequences / elapsed,
        }


class Throughput(L.Callback):
    """Tokens and sequences per second, step time and peak memory (see the module doc); training
    numbers every ``every_n_steps`` optimizer steps (null: the trainer's log_every_n_steps),
    validation and test numbers once per run over the whole split. Costs a clock reading per batch."""

    def __init__(self, every_n_steps: int | None = None) -> None:
        check_every("callbacks.throughput.every_n_steps", every_n_steps)
        self.every_n_steps = every_n_steps
        self._train: Counter | None = None
        self._eval: Counter | None = None
        self._step_start = 0.0
        self._last_logged_step: int | None = None
        self._started_up = False
        self._in_step = False
        self._memory_step: int | None = None  # peak memory is logged once per step number

    # -- training --------------------------------------------------------------------------------

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._train = Counter()  # validation between epochs is not training time

    def exclude(self, seconds: float) -> None:
        """Leave ``seconds`` of other callbacks' work (the diagnostics probes) out of the numbers."""
        if self._train is not None:
            self._train.start += seconds  # a later start: the window's wall time without them
            if self._in_step:
                self._step_start += seconds

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int) -> None:
        self._step_start = time.perf_counter()
        self._in_step = True

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int) -> None:
        self._in_step = False
        counter = self._train
        if counter is None:
            return
        counter.add(batch)
        counter.steps += 1
        step = trainer.global_step
        if not self._started_up and step > 0:
            self._started_up = True
            synchronize(pl_module.device)
            age = process_age()
            if age is not None:
                log_scalars(trainer.loggers, {"throughput/startup_s": age}, step - 1)
        if not logging_due(trainer, self.every_n_steps, self._last_logged_step):  # optimizer steps, not batches
            counter.step_seconds += time.perf_counter() - self._step_start
            return
        synchronize(pl_module.device)
        now = time.perf_counter()
        counter.step_seconds += now - self._step_start
        values = counter.rates("train")
        values["throughput/train_step_ms"] = 1000 * counter.step_seconds / counter.steps
        values["throughput/train_outside_step_share"] = max(0.0, 1 - counter.step_seconds / max(now - counter.start, 1e-9))
        values.update(self._memory(pl_module.device, step - 1))
        log_scalars(trainer.loggers, values, step - 1)
        self._last_logged_step = step
        self._train = Counter()

    # -- validation and test -----------------------------------------------------------------------

    def _eval_start(self) -> None:
        self._eval = Counter()

    def _eval_batch(self, batch: Any) -> None:
        if self._eval is not None:
            self._eval.add(batch)

    def _eval_end(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        counter, self._eval = self._eval, None
        if self._train is not None:  # validation inside an epoch (val_check_interval): not training time
            self._train = Counter()
        if counter is None or trainer.sanity_checking or not counter.sequences:
            return
        synchronize(pl_module.device)
        # Where Lightning logs the stage's own metrics: after k optimizer steps, x = k - 1 while
        # fitting (validation runs before the step counter moves on) and x = k for a test after it.
        step = trainer.fit_loop.epoch_loop._batches_that_stepped
        log_scalars(trainer.loggers, {**counter.rates(stage), **self._memory(pl_module.device, step)}, step)

    def _memory(self, device: torch.device, step: int) -> dict[str, float]:
        """Peak memory, unless already logged at ``step`` (training, validation and test may share one)."""
        if step == self._memory_step:
            return {}
        self._memory_step = step
        return peak_memory(device)

    def on_validation_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._eval_start()

    def on_validation_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> None:
        self._eval_batch(batch)

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._eval_end(trainer, pl_module, "val")

    def on_test_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._eval_start()

    def on_test_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> None:
        self._eval_batch(batch)

    def on_test_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._eval_end(trainer, pl_module, "test")
