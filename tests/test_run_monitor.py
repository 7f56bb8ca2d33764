"""DivergenceMonitor: a non-finite training loss stops the run and is reported at its own step."""

from __future__ import annotations

import math
from pathlib import Path
from types import SimpleNamespace

import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from conftest import TINY_OVERRIDES, describe, read_json, run_cli
from rnnlab.callbacks import DivergenceMonitor


def batch_end(monitor: DivergenceMonitor, trainer: SimpleNamespace, loss: torch.Tensor) -> None:
    trainer.global_step += 1  # Lightning counts the step before the batch-end hooks run
    monitor.on_train_batch_end(trainer, None, {"loss": loss}, None, trainer.global_step - 1)


def test_a_cpu_loss_is_checked_at_its_own_step() -> None:
    monitor, trainer = DivergenceMonitor(), SimpleNamespace(global_step=0, should_stop=False)
    for loss in (1.0, 0.5, float("inf")):
        batch_end(monitor, trainer, torch.tensor(loss))
    assert monitor.diverged and monitor.diverged_at_step == 3 and trainer.should_stop
    batch_end(monitor, trainer, torch.tensor(float("nan")))
    assert monitor.diverged_at_step == 3, "the first divergence is the one reported"


def test_finite_losses_never_stop_the_run() -> None:
    monitor, trainer = DivergenceMonitor(), SimpleNamespace(global_step=0, should_stop=False)
    for loss in (3.0, 1e30, -2.0):
        batch_end(monitor, trainer, torch.tensor(loss))
    monitor.on_train_epoch_end(trainer, None)
    monitor.on_train_end(trainer, None)
    assert not monitor.diverged and not trainer.should_stop


def test_rnnlab_train_reports_a_diverged_run(tmp_path: Path) -> None:
    """A learning rate far too large: the loss overflows, training stops, metrics.json says where."""
    run_dir = tmp_path / "run"
    result = run_cli(
        "train",
        "data=keywords",
        "data.num_train=64",
        "data.num_val=16",
        "data.num_test=16",
        *TINY_OVERRIDES,
        "trainer=cpu",
        "trainer.gradient_clip_val=null",
        "model.optimizer.lr=1e30",
        "trainer.max_epochs=3",
        f"hydra.run.dir={run_dir}",
        cwd=tmp_path,
    )
    metrics = read_json(run_dir / "metrics.json")
    assert metrics["status"] == "diverged", describe(result)
    assert 1 <= metrics["diverged_at_step"] < 3 * 8
    # The stop makes Lightning write that step's values, whatever log_every_n_steps says: the
    # diverged loss itself, at Lightning's x = step - 1.
    events = EventAccumulator(str(run_dir / "tensorboard"), size_guidance={"scalars": 0})
    events.Reload()
    losses = {event.step: event.value for event in events.Scalars("train/loss")}
    assert not math.isfinite(losses[metrics["diverged_at_step"] - 1])
