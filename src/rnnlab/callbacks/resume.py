"""Exact resume: a run stopped by SIGTERM or SIGINT (Ctrl-C) continues as if never stopped.

On the signal, training goes on to the start of the next training batch, saves
``checkpoints/last.ckpt`` there (model, optimizer, scheduler, loops, callbacks, and — added here —
the Python, NumPy and torch RNG states), then stops. ``rnnlab-train ckpt_path=<run>/checkpoints/last.ckpt``
restores it: Lightning restarts the epoch at the saved batch index, the data module's bucketed
sampler skips the batches already trained on (its order is a function of seed and epoch) and the
RNG states go back, so dropout masks and everything after match an uninterrupted run. Every
epoch's random streams start from (seed, epoch), and validation leaves them as it found them, so
that when DataLoader iterators are created (which draws from the torch RNG) does not matter.

Under DDP every rank must receive the signal (SLURM and torchrun signal them all), since saving
a checkpoint is collective.
"""

from __future__ import annotations

import random
import signal
import threading
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.utilities import rank_zero_warn

RNG_KEY = "rnnlab_rng_states"
POSITION_KEY = "rnnlab_mid_epoch_position"
SIGNALS = (signal.SIGTERM, signal.SIGINT)


def collect_rng_states() -> dict[str, Any]:
    """Python, NumPy, torch (and CUDA) RNG states as tensors and plain values, so that checkpoints
    still load with ``weights_only=True``."""
    kind, keys, position, has_gauss, cached = np.random.get_state()
    return {
        "python": random.getstate(),
        "numpy": (kind, torch.from_numpy(keys.astype(np.int64)), position, has_gauss, cached),
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def set_rng_states(states: dict[str, Any]) -> None:
    random.setstate(states["python"])
    kind, keys, position, has_gauss, cached = states["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), position, has_gauss, cached))
    torch.set_rng_state(states["torch"])
    if states["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


class ExactResume(L.Callback):
    """Save on SIGTERM/SIGINT at a batch boundary; on restore, skip trained batches, restore RNGs."""

    def __init__(self, checkpoint_path: str | Path, seed: int = 0) -> None:
        self.checkpoint_path = Path(checkpoint_path)
        self.seed = seed
        self.stop_requested: int | None = None  # the signal number
        self._previous_handlers: dict[int, Any] = {}
        self._rng_states: dict[str, Any] | None = None
        self._saving_at_batch: int | None = None
        self._rng_before_validation: dict[str, Any] = {}
        self._resume_mid_epoch: dict[str, int] | None = None

    # -- stopping -------------------------------------------------------------------------------

    def _request_stop(self, signum: int, frame: Any) -> None:
        if self.stop_requested is not None:  # a second signal: stop now, without saving
            raise KeyboardInterrupt
        self.stop_requested = signum

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if threading.current_thread() is threading.main_thread():  # signal handlers live there only
            for signum in SIGNALS:
                self._previous_handlers[signum] = signal.signal(signum, self._request_stop)
        if self._rng_states is not None and self._resume_mid_epoch is None:
            set_rng_states(self._rng_states)  # a checkpoint from an epoch's end: before its next epoch
            self._rng_states = None

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int) -> None:
        if self._rng_states is not None:
            # Restored here, not earlier: creating the epoch's DataLoader iterator draws from the
            # torch RNG, which the saved states already include.
            set_rng_states(self._rng_states)
            self._rng_states = None
        if self.stop_requested is None:
            return
        # Here nothing of this batch has run: Lightning counts batch_idx batches completed, and the
        # RNG states are those the batch will start from.
        self._saving_at_batch = batch_idx
        try:
            trainer.save_checkpoint(self.checkpoint_path)
        finally:
            self._saving_at_batch = None
        message = (
            f"{signal.Signals(self.stop_requested).name}: saved {self.checkpoint_path} at epoch {trainer.current_epoch}, "
            f"batch {batch_idx}; resume with ckpt_path={self.checkpoint_path}"
        )
        rank_zero_warn(message)
        raise KeyboardInterrupt(message)

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._restore_handlers()

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        self._restore_handlers()

    def _restore_handlers(self) -> None:
        for signum, handler in self._previous_handlers.items():
            signal.signal(signum, handler)
        self._previous_handlers.clear()

    # -- resuming -------------------------------------------------------------------------------

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # Each epoch's random streams start from (seed, epoch), not from whatever the loaders'
        # iterators drew before (a resumed run creates them at other moments than the first run).
        epoch_seed = (self.seed * 1_000_003 + trainer.current_epoch) % 2**32
        random.seed(epoch_seed)
        np.random.seed(epoch_seed)
        torch.manual_seed(epoch_seed)

    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._rng_before_validation = collect_rng_states()

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # Validation leaves the training RNG streams as it found them: a resumed run re-creates
        # its validation loader (a fresh iterator draws a seed) where the first run reused its own.
        set_rng_states(self._rng_before_validation)


    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]) -> None:
        checkpoint[RNG_KEY] = collect_rng_states()
        if self._saving_at_batch is not None:
            checkpoint[POSITION_KEY] = {"epoch": trainer.current_epoch, "batches_done": self._saving_at_batch}

    def on_load_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]) -> None:
        """Called before the training loader exists: tell the data module where the epoch stopped."""
        self._rng_states = checkpoint.get(RNG_KEY)
        position = checkpoint.get(POSITION_KEY)
        self._resume_mid_epoch = position
        if position is None:
            return
        datamodule = trainer.datamodule
        if hasattr(datamodule, "resume_training_at"):
            datamodule.resume_training_at(position["epoch"], position["batches_done"])
        else:
            rank_zero_warn("resuming mid-epoch without an rnnlab data module: the epoch starts again from its first batch")
