"""Gradient health while training: norms before and after clipping, per layer, and histograms.

Tags (TensorBoard, and every other logger for scalars), at the optimizer step they describe:

    grad/norm               global L2 norm of all gradients, before clipping
    grad/norm_clipped       the same after clipping (what the optimizer receives)
    grad/clipped_fraction   share of the optimizer steps since the previous point that clipping changed
    grad_norm/<layer>       L2 norm of one layer's gradients before clipping: ``backbone.embedding``,
                            ``backbone.rnn.l0``, ``backbone.rnn.l0_reverse``, ``head.output``, ...
    weights/<parameter>, gradients/<parameter>   histograms (ParameterHistograms)

Points are logged at Lightning's own step numbering, so that they line up with ``train/loss``:
the numbers of the k-th optimizer step (computed with the weights after k - 1 steps) at x = k - 1.
"""

from __future__ import annotations

import re
from typing import Any

import lightning as L
import torch
from torch import nn
from torch.nn.utils import get_total_norm

from rnnlab.errors import UserError, is_positive_int
from rnnlab.tasks.media import log_histogram, log_scalars

# A recurrent layer's parameters (torch.nn and the reference cells name them alike): weight_ih_l0_reverse.
RECURRENT_PARAMETER = re.compile(r"^(?:weight|bias)_(?:ih|hh)_(l\d+(?:_reverse)?)$")


def parameter_groups(module: nn.Module) -> dict[str, list[nn.Parameter]]:
    """The trainable parameters of ``module`` by layer: one group per leaf module (``head.output``),
    and one per layer and direction of a recurrent module (``backbone.rnn.l1_reverse``)."""
    groups: dict[str, list[nn.Parameter]] = {}
    for name, parameter in module.named_parameters():
        if not parameter.requires_grad:
            continue
        owner, _, leaf = name.rpartition(".")
        recurrent = RECURRENT_PARAMETER.match(leaf)
        group = f"{owner}.{recurrent.group(1)}" if recurrent else (owner or leaf)
        groups.setdefault(group, []).append(parameter)
    return groups


def gradient_norm(parameters: list[nn.Parameter]) -> torch.Tensor | None:
    """The L2 norm of the gradients of ``parameters`` (a 0-dim tensor, left on its device); None without gradients."""
    grads = [p.grad for p in parameters if p.grad is not None]
    return get_total_norm(grads) if grads else None


def clipped_norm(trainer: L.Trainer, grads: list[torch.Tensor], before: torch.Tensor) -> torch.Tensor:
    """The global norm ``grads`` will have once Lightning clips them with the trainer's settings.

    Worked out before the optimizer steps, since some optimizers (e.g. SGD with Nesterov momentum)
    change ``.grad`` in place when they step: by norm, torch's ``clip_grad_norm_`` scales by
    min(1, clip / (norm + 1e-6)); by value, every entry is clamped to [-clip, clip].
    """
    clip = trainer.gradient_clip_val
    if not clip:
        return before
    if str(trainer.gradient_clip_algorithm).lower().endswith("value"):
        return get_total_norm([g.clamp(-clip, clip) for g in grads])
    return before * torch.clamp(clip / (before + 1e-6), max=1.0)


def check_every(key: str, value: int | None) -> None:
    """``value`` is null (the trainer's log_every_n_steps) or a positive integer."""
    if value is not None and not is_positive_int(value):
        raise UserError(f"{key} must be a positive integer or null; got {value!r}")


def logging_interval(trainer: L.Trainer, every_n_steps: int | None) -> int:
    """``every_n_steps``, or the trainer's ``log_every_n_steps`` when it is null."""
    return every_n_steps or max(1, int(trainer.log_every_n_steps))


def logging_due(trainer: L.Trainer, every_n_steps: int | None, last_logged: int | None) -> bool:
    """Whether the optimizer step that just ended (``trainer.global_step``) is one to log at: a
    multiple of :func:`logging_interval` other than 0 and not ``last_logged`` (under gradient
    accumulation several batches end on one optimizer step)."""
    step = trainer.global_step
    return step > 0 and step != last_logged and step % logging_interval(trainer, every_n_steps) == 0


class GradientHealth(L.Callback):
    """Every ``every_n_steps`` optimizer steps (null: the trainer's log_every_n_steps): the global
    gradient norm before and after clipping, each layer's norm before clipping, and the share of the
    steps since the previous point that clipping changed.

    Both norms come from ``on_before_optimizer_step``, where Lightning has unscaled the gradients
    (AMP) and is about to clip them (:func:`clipped_norm`). Every step costs one fused norm
    computation and no host synchronisation; the per-layer norms only logged steps.
    """

    def __init__(self, every_n_steps: int | None = None) -> None:
        check_every("callbacks.gradient_health.every_n_steps", every_n_steps)
        self.every_n_steps = every_n_steps
        self._groups: dict[str, list[nn.Parameter]] = {}
        self._parameters: list[nn.Parameter] = []
        self._norms: tuple[torch.Tensor, torch.Tensor] | None = None  # this step's (before, after clipping)
        self._layers: dict[str, torch.Tensor] = {}
        self._reset_window()

    def _reset_window(self) -> None:
        self._steps = 0
        self._clipped: torch.Tensor | int = 0  # a device tensor once counted: no host sync per step

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._groups = parameter_groups(pl_module)
        # Listed once: walking the module tree (metrics included) each step costs more than the norm.
        self._parameters = list(pl_module.parameters())
        self._reset_window()

    def _logged(self, trainer: L.Trainer, step: int) -> bool:
        return step % logging_interval(trainer, self.every_n_steps) == 0

    def on_before_optimizer_step(self, trainer: L.Trainer, pl_module: L.LightningModule, optimizer: Any) -> None:
        grads = [p.grad for p in self._parameters if p.grad is not None]
        if not grads:
            return
        before = get_total_norm(grads)
        self._norms = (before, clipped_norm(trainer, grads, before))
        # This is optimizer step global_step + 1 (global_step counts it once the optimizer has stepped).
        if self._logged(trainer, trainer.global_step + 1):
            norms = {name: gradient_norm(parameters) for name, parameters in self._groups.items()}
            self._layers = {name: norm for name, norm in norms.items() if norm is not None}

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int) -> None:
        norms, self._norms = self._norms, None
        if norms is None:  # no optimizer step in this batch (gradient accumulation), or no gradients
            return
        before, after = norms
        self._steps += 1
        # Clipping by norm scales by clip / (norm + 1e-6): any change beyond rounding counts.
        self._clipped = self._clipped + (after < before * (1 - 1e-5)).long()
        if not self._logged(trainer, trainer.global_step):
            return
        values = {
            "grad/norm": float(before),
            "grad/norm_clipped": float(after),
            "grad/clipped_fraction": float(self._clipped) / self._steps,
        }
        values.update({f"grad_norm/{name}": float(norm) for name, norm in self._layers.items()})
        log_scalars(trainer.loggers, values, trainer.global_step - 1)
        self._layers = {}
        self._reset_window()


class ParameterHistograms(L.Callback):
    """Every ``every_n_epochs`` training epochs, at the epoch's last optimizer step: a histogram of
    every parameter (``weights/<name>``) and of its gradient before clipping (``gradients/<name>``).
    Taken just before the optimizer steps, since Lightning zeroes the gradients before validation
    and some optimizers change them in place when they step."""

    def __init__(self, every_n_epochs: int = 1) -> None:
        if not is_positive_int(every_n_epochs):
            raise UserError(f"callbacks.histograms.every_n_epochs must be a positive integer; got {every_n_epochs!r}")
        self.every_n_epochs = every_n_epochs

    def on_before_optimizer_step(self, trainer: L.Trainer, pl_module: L.LightningModule, optimizer: Any) -> None:
        if not trainer.is_last_batch or (trainer.current_epoch + 1) % self.every_n_epochs:
            return
        for name, parameter in pl_module.named_parameters():  # at Lightning's step numbering (module doc)
            log_histogram(trainer.loggers, f"weights/{name}", parameter, trainer.global_step)
            if parameter.grad is not None:
                log_histogram(trainer.loggers, f"gradients/{name}", parameter.grad, trainer.global_step)
