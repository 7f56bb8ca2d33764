"""Diagnostics of the recurrence itself, measured on a fixed probe batch: how far gradients travel
back through time, and how saturated the units and gates are.

The probe batch is the first ``probe_size`` examples of the first training batch, kept for the
whole run. Every ``every_n_steps`` optimizer steps (null: the trainer's log_every_n_steps), and
once before the first step, the task's validation loss (``probe_loss``) is computed on it with the
backbone recording every step (``RecurrentBackbone.recording``: the step-by-step equations on the
backbone's own weights, so ``impl=fused`` and ``impl=reference`` give the same numbers). The model
is in eval mode meanwhile (no dropout, no random numbers drawn) and the optimizer's gradients are
not touched.

Tags:

    grad_flow/norm_by_step                 figure: ‖∂loss/∂h_t‖ against t, log scale, per direction
                                           (root mean square over the sequences that reach t)
    grad_flow/first_last_ratio             ‖∂loss/∂h_1‖ / ‖∂loss/∂h_T‖ of the last layer's forward direction
    grad_flow/first_last_ratio_reverse     its backward direction (bidirectional), which reads from T
                                           back to 1: ‖∂loss/∂h_T‖ / ‖∂loss/∂h_1‖
    grad_flow/log10_first_last_ratio[_reverse]   their log10 (they span many orders of magnitude)
    saturation/<layer>/tanh_saturated      vanilla tanh RNN: share of units with |h| > 0.99
    saturation/<layer>/relu_zero           vanilla relu RNN: share of units at exactly 0
    saturation/<layer>/<gate>_mean         LSTM input/forget/output, GRU reset/update gates: mean activation
    saturation/<layer>/<gate>_saturated    share of gate activations below 0.01 or above 0.99

h_t is the last layer's hidden state at position t (1-based) and T each sequence's last valid
position; ‖·‖ is taken over the hidden units and the probe batch's sequences. ∂loss/∂h_t is the
full derivative: through the output at t and through every later step. Each ratio is the state a
direction read first over the one it read last, so for both directions a ratio ≪ 1 is a
vanishing gradient and ≫ 1 an exploding one. Padded steps are left out of every number.

The ratio says how far gradients travel when the loss comes from the end of the sequence
(classification with last-state pooling, the forecaster, the adding problem). Where every step
has its own loss (tagging, language modelling) or attention reaches every step (seq2seq),
∂loss/∂h_t is dominated by the loss terms near t and the ratio stays near 1 however short the
memory: read the figure's slope instead. Only the task's ``backbone`` is measured (for seq2seq
and the autoregressive forecaster: the encoder, not the decoder); a model without a recurrent
backbone gets a warning and no numbers.
"""

from __future__ import annotations

import math
import time
from typing import Any

import lightning as L
import torch
from lightning.pytorch.utilities import move_data_to_device, rank_zero_warn

from rnnlab.backbones.recording import DirectionRecord
from rnnlab.backbones.recurrent import RecurrentBackbone
from rnnlab.batch import Batch
from rnnlab.callbacks.gradients import check_every, logging_due
from rnnlab.callbacks.throughput import Throughput
from rnnlab.errors import UserError, is_positive_int
from rnnlab.tasks.media import gradient_flow_figure, log_figure, log_scalars

#: |h| above this is a saturated tanh unit; a sigmoid gate is saturated below 1 - this or above it.
SATURATION = 0.99


class RecurrenceProbe(L.Callback):
    """The shared schedule and probe batch; subclasses define ``measure`` and ``config_key``."""

    config_key = ""

    def __init__(self, every_n_steps: int | None = None, probe_size: int = 32) -> None:
        check_every(f"callbacks.{self.config_key}.every_n_steps", every_n_steps)
        if not is_positive_int(probe_size):
            raise UserError(f"callbacks.{self.config_key}.probe_size must be a positive integer; got {probe_size!r}")
        self.every_n_steps = every_n_steps
        self.probe_size = probe_size
        self.batch: Batch | None = None
        self.enabled = True
        self._last_step: int | None = None  # the step of the last probe

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        backbone = getattr(pl_module, "backbone", None)
        self.enabled = isinstance(backbone, RecurrentBackbone)
        if not self.enabled:  # e.g. seq2seq from a feature vector: callbacks=diagnostics still runs
            rank_zero_warn(
                f"callbacks.{self.config_key} measures the recurrent backbone (model/backbone=rnn, lstm or gru); "
                f"this model's backbone is {type(backbone).__name__}: nothing to measure"
            )

    def state_dict(self) -> dict[str, Any]:
        # The probe batch travels in checkpoints, so that a resumed run goes on probing the same one.
        return {"batch": None if self.batch is None else vars(self.batch)}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        batch = state_dict.get("batch")
        self.batch = None if batch is None else Batch(**batch)

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int) -> None:
        if not self.enabled:
            return
        if self.batch is not None:
            if self.batch.inputs.device != pl_module.device:  # loaded from a checkpoint
                self.batch = move_data_to_device(self.batch, pl_module.device)
            return
        if not isinstance(batch, Batch):
            raise UserError(f"callbacks.{self.config_key} needs rnnlab batches; got {type(batch).__name__}")
        probe = batch.first(self.probe_size)
        # Copies, so that the probe does not keep the whole first batch (or a reused buffer) alive.
        self.batch = Batch(
            probe.inputs.clone(),
            probe.lengths.clone(),
            probe.mask.clone(),
            None if probe.targets is None else probe.targets.clone(),
            {k: v.clone() if isinstance(v, torch.Tensor) else v for k, v in probe.extras.items()},
        )
        if trainer.global_step == 0:  # the untrained model: where the story starts
            self._probe(trainer, pl_module)

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int) -> None:
        if self.enabled and logging_due(trainer, self.every_n_steps, self._last_step):
            self._probe(trainer, pl_module)

    def _probe(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._last_step = trainer.global_step
        modes = [(module, module.training) for module in pl_module.modules()]
        pl_module.eval()
        start = time.perf_counter()
        try:
            self.measure(trainer, pl_module, pl_module.backbone, self.batch)
        finally:
            for module, training in modes:  # as they were, submodules kept in eval included
                module.training = training
            seconds = time.perf_counter() - start
            for callback in trainer.callbacks:  # the probes' time is not the training's
                if isinstance(callback, Throughput):
                    callback.exclude(seconds)

    def measure(self, trainer: L.Trainer, pl_module: L.LightningModule, backbone: RecurrentBackbone, batch: Batch) -> None:
        raise NotImplementedError


def gradient_flow(
    pl_module: L.LightningModule, backbone: RecurrentBackbone, batch: Batch
) -> list[tuple[DirectionRecord, torch.Tensor]]:
    """Per direction of the last layer: its record and ‖∂loss/∂h‖ of each state per sequence, (B, T)
    in the direction's reading order (``record.in_positions`` maps it to positions), zero at
    padding, float64. ``pl_module.probe_loss`` gives the loss."""
    with backbone.recording() as recorder, torch.enable_grad():
        loss = pl_module.probe_loss(batch)
        directions = recorder.top_layer()
        states = [state for direction in directions for state in direction.states]
        grads = torch.autograd.grad(loss, states, allow_unused=True, materialize_grads=True)
    result, start = [], 0
    for direction in directions:
        steps = len(direction.states)
        per_step = torch.stack(grads[start : start + steps], dim=1)  # (B, T, H), reading order
        start += steps
        # In float64: squaring float32 gradients of 1e-20 and below (long vanilla RNNs) would underflow.
        norms = per_step.double().norm(dim=2).masked_fill(~direction.mask, 0.0)  # (B, T)
        result.append((direction, norms.detach()))
    return result


def first_last_ratio(norms: torch.Tensor, lengths: torch.Tensor) -> float:
    """norms (B, T) in reading order, lengths (B,) -> the norm over the batch of the first states read
    over that of each sequence's last valid state (nan when the last states get no gradient)."""
    rows = torch.arange(norms.shape[0], device=norms.device)
    first, last = norms[:, 0].norm(), norms[rows, lengths.to(norms.device) - 1].norm()
    return float(first / last) if float(last) > 0 else float("nan")


class GradientFlow(RecurrenceProbe):
    """‖∂loss/∂h_t‖ for every position t of the last layer, as a figure and as the ratio
    ‖∂loss/∂h_1‖ / ‖∂loss/∂h_T‖: the vanishing (ratio ≪ 1) or exploding (≫ 1) gradient through time."""

    config_key = "gradient_flow"

    def measure(self, trainer: L.Trainer, pl_module: L.LightningModule, backbone: RecurrentBackbone, batch: Batch) -> None:
        curves, values = {}, {}
        for direction, norms in gradient_flow(pl_module, backbone, batch):
            suffix = "_reverse" if direction.reverse else ""
            ratio = first_last_ratio(norms, direction.lengths)
            values[f"grad_flow/first_last_ratio{suffix}"] = ratio
            # Ratios span 30 orders of magnitude between cells: their log10 plots readably.
            values[f"grad_flow/log10_first_last_ratio{suffix}"] = math.log10(ratio) if ratio > 0 else (-math.inf if ratio == 0 else math.nan)
            by_position = direction.in_positions(norms.unsqueeze(2)).squeeze(2)  # (B, T)
            # The root mean square over the sequences that reach position t (the later positions of
            # a variable-length batch have fewer of them; a sum would fall for that reason alone).
            reach = direction.in_positions(direction.mask.unsqueeze(2)).squeeze(2).sum(dim=0).clamp(min=1)  # (T,)
            rms = (by_position.pow(2).sum(dim=0) / reach).sqrt()
            curves["backward" if direction.reverse else "forward"] = rms.cpu().numpy()
        log_scalars(trainer.loggers, values, trainer.global_step)
        title = f"{backbone.cell}, last layer, step {trainer.global_step}"
        log_figure(trainer.loggers, "grad_flow/norm_by_step", gradient_flow_figure(curves, title), trainer.global_step)


def saturation(pl_module: L.LightningModule, backbone: RecurrentBackbone, batch: Batch) -> dict[str, float]:
    """``{"<layer>/<measure>": share}`` for every layer and direction on ``batch`` (see the module doc)."""
    with backbone.recording() as recorder, torch.no_grad():
        pl_module.probe_loss(batch)
    values = {}
    for name, direction in recorder.directions.items():
        valid = direction.mask  # (B, T)
        if not direction.gates:  # the vanilla RNN: its state is the unit's output
            states = torch.stack(direction.states, dim=1)[valid]  # (valid steps, H)
            if backbone.rnn.nonlinearity == "tanh":
                values[f"{name}/tanh_saturated"] = float((states.abs() > SATURATION).float().mean())
            else:
                values[f"{name}/relu_zero"] = float((states == 0).float().mean())
        for gate, activations in direction.gates.items():
            gate_values = activations[valid]  # (valid steps, H)
            values[f"{name}/{gate}_mean"] = float(gate_values.mean())
            outside = (gate_values < 1 - SATURATION) | (gate_values > SATURATION)
            values[f"{name}/{gate}_saturated"] = float(outside.float().mean())
    return values


class Saturation(RecurrenceProbe):
    """Saturated tanh units (vanilla RNN) and the mean and saturated share of every LSTM/GRU gate,
    per layer and direction, on the probe batch with padding left out."""

    config_key = "saturation"

    def measure(self, trainer: L.Trainer, pl_module: L.LightningModule, backbone: RecurrentBackbone, batch: Batch) -> None:
        values = saturation(pl_module, backbone, batch)
        log_scalars(trainer.loggers, {f"saturation/{k}": v for k, v in values.items()}, trainer.global_step)
