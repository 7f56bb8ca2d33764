"""The LightningModule base every task shares: one step path for every batch and stage."""

from __future__ import annotations

from typing import Any, ClassVar

import lightning as L
import torch
from hydra.utils import instantiate
from lightning.pytorch.plugins.precision import MixedPrecision
from torch import nn
from torch.nn.utils import clip_grads_with_norm_, get_total_norm
from torchmetrics import Metric, MetricCollection

from rnnlab import __version__
from rnnlab.batch import Batch
from rnnlab.errors import UserError

STAGES = ("train", "val", "test")
# Keys of a scheduler config that are Lightning's, not the scheduler class's.
LIGHTNING_SCHEDULER_KEYS = ("interval", "frequency", "monitor")


def build_backbone(config: dict[str, Any], input_spec: dict[str, Any], feature_size: int = 0) -> nn.Module:
    """Instantiate the backbone config (``_target_``) sized from the data: token ids or real-valued
    features, plus ``feature_size`` extra per-step features from the task (e.g. character encodings)."""
    if input_spec["kind"] == "tokens":
        sizes = {"vocab_size": input_spec["vocab_size"], "padding_idx": input_spec["pad_id"]}
    else:
        sizes = {"input_size": input_spec["num_features"]}
    if feature_size:
        sizes["feature_size"] = feature_size
    return instantiate(config, **sizes)


class WeightedMean(Metric):
    """sum(value * weight) / sum(weight) over every update since the last reset: each value a mean
    over ``weight`` items (examples, tokens, steps), so the result is the mean over all the items.
    Summed in float64 and synced across processes as sums; a NaN value makes the mean NaN.

    Not torchmetrics' MeanMetric: it checks every update for NaN on the host (on a GPU, a wait for
    the step's kernels), and told not to, it drops the weights (Lightning-AI/torchmetrics#3434).
    """

    full_state_update = False

    def __init__(self) -> None:
        super().__init__()
        self.add_state("total", torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("weight", torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, value: torch.Tensor, weight: int | torch.Tensor) -> None:
        """value: a 0-dim mean over ``weight`` items (a count, or a 0-dim tensor on the value's device)."""
        self.total += value.detach().double() * weight
        self.weight += weight

    def compute(self) -> torch.Tensor:
        return (self.total / self.weight).float()


class RecurrentTask(L.LightningModule):
    """Joins a backbone and a head. Subclasses define ``forward``, ``compute`` and their metrics.

    Constructor arguments are plain data (dicts/lists/numbers) so that ``load_from_checkpoint``
    rebuilds the task from the checkpoint alone; ``data_spec`` carries the vocabulary and label set.
    """

    #: metric name -> "min" | "max"; every name is logged as ``{stage}/{name}``.
    metric_modes: ClassVar[dict[str, str]] = {"loss": "min"}
    default_monitor: ClassVar[str] = "val/loss"
    #: The block of rnnlab-predict's config whose options predict_step takes (e.g. ``generation``), or None.
    prediction_options: ClassVar[str | None] = None
    #: The ``task`` a data module's spec must name, and the data configs that provide it (for the error).
    data_task: ClassVar[str] = ""
    data_choices: ClassVar[str] = ""

    def __init__(
        self,
        data_spec: dict[str, Any],
        backbone: dict[str, Any],
        optimizer: dict[str, Any],
        scheduler: dict[str, Any] | None = None,
        feature_size: int = 0,
    ) -> None:
        """``feature_size``: extra per-step features the subclass feeds the backbone beside its inputs."""
        super().__init__()
        self.check_data(data_spec)
        self.data_spec = data_spec
        self.backbone = build_backbone(backbone, data_spec["input"], feature_size)
        self.optimizer_config = optimizer
        self.scheduler_config = scheduler or None
        # Keyed "<stage>_padding": ModuleDict keys may not shadow Module attributes such as ``train``.
        # The share of padded steps over every (B, T) batch of the epoch.
        self.padding_ratio = nn.ModuleDict({f"{stage}_padding": WeightedMean() for stage in STAGES})
        # The epoch's val/test loss, weighted by loss_weight. A metric rather than a tensor logged
        # with sync_dist: Lightning averages a logged tensor's summed batch sizes across DDP ranks
        # in an integer tensor, truncating (122 + 183) / 2 to 152 when the ranks' weights differ.
        self.epoch_loss = nn.ModuleDict({f"{stage}_loss": WeightedMean() for stage in STAGES if stage != "train"})
        # The composed run config, set by rnnlab-train and stored in every checkpoint.
        self.run_config: dict[str, Any] | None = None
        # Names registered with Lightning this epoch by log_epoch_value, per stage.
        self._registered: dict[str, set[str]] = {stage: set() for stage in STAGES}
        # This training batch's step values, logged at its end (on_train_batch_end).
        self._step_values: dict[str, Any] | None = None

    @classmethod
    def check_data(cls, data_spec: dict[str, Any]) -> None:
        """UserError unless the data module was made for this task (e.g. a tagger on classification data)."""
        given = data_spec.get("task")
        if given != cls.data_task:
            raise UserError(
                f"{cls.__name__} needs {cls.data_task.replace('_', ' ')} data ({cls.data_choices}); "
                f"the data given is for {str(given or 'another task').replace('_', ' ')}"
            )

    def metric_mode(self, monitor: str) -> str:
        """'min' or 'max' for a logged metric such as ``val/acc``; UserError for an unknown name."""
        stage, _, name = monitor.partition("/")
        if stage not in STAGES or name not in self.metric_modes:
            valid = [f"val/{m}" for m in self.metric_modes]
            raise UserError(f"optimized_metric must be one of {', '.join(valid)}; got {monitor!r}")
        return self.metric_modes[name]

    # -- one path for every stage ------------------------------------------------------------

    def compute(self, batch: Batch, stage: str) -> torch.Tensor:
        """Forward the batch, update the stage's metrics, return the loss."""
        raise NotImplementedError

    def probe_loss(self, batch: Batch) -> torch.Tensor:
        """The loss of ``batch`` as validation computes it (teacher-forced, from a zero state), with
        no metric updates, logging or carried state: what the diagnostics differentiate
        (rnnlab.callbacks.probing). Run it in eval mode so that it draws no random numbers."""
        raise NotImplementedError

    def loss_weight(self, batch: Batch) -> int | torch.Tensor:
        """How many items the batch's (mean) loss averages over: examples here, target tokens for
        token-level tasks, so that the epoch's loss is the mean over items, not over batches.
        Token counts stay 0-dim tensors on the batch's device: reading them on the host would make
        it wait for a GPU."""
        return len(batch)

    def log_epoch_value(self, name: str, value: Metric | float, prog_bar: bool = False) -> None:
        """Log ``value`` under ``name`` (``<stage>/...``) as one number for the epoch: a torchmetrics
        Metric (or MetricCollection) that the caller updates every step, or a number constant
        through the epoch (e.g. the teacher-forcing ratio).

        Registered with Lightning once per epoch: Lightning keeps the metric, computes it (synced
        across DDP ranks) at the epoch's end and resets it. Logging it every step as well would
        only add Lightning's per-call work (a walk over the metric's states, about a millisecond).
        """
        stage = name.split("/", 1)[0]
        registered = self._registered[stage]
        if name in registered:
            return
        registered.add(name)
        if isinstance(value, MetricCollection):
            for key, metric in value.items():
                self.log(key, metric, on_step=False, on_epoch=True, prog_bar=prog_bar)
            return
        self.log(name, value, on_step=False, on_epoch=True, prog_bar=prog_bar, batch_size=1)

    def _new_epoch(self, stage: str) -> None:
        self._registered[stage].clear()

    def on_train_epoch_start(self) -> None:
        self._new_epoch("train")

    def on_validation_epoch_start(self) -> None:
        self._new_epoch("val")

    def on_test_epoch_start(self) -> None:
        self._new_epoch("test")

    def _step(self, batch: Batch, stage: str) -> torch.Tensor:
        loss = self.compute(batch, stage)
        if stage == "train":
            # Logged at the batch's end (on_train_batch_end); the learning rate as this step used it,
            # before a per-step scheduler moves it on.
            self._step_values = {"train/loss": loss.detach(), "train/lr": self.trainer.optimizers[0].param_groups[0]["lr"]}
        else:
            epoch_loss = self.epoch_loss[f"{stage}_loss"]
            epoch_loss.update(loss.detach(), weight=self.loss_weight(batch))
            # Synced over ranks (its states are sums): the mean over every rank's items.
            self.log_epoch_value(f"{stage}/loss", epoch_loss, prog_bar=True)
        ratio = self.padding_ratio[f"{stage}_padding"]
        ratio.update((~batch.mask).float().mean(), weight=batch.mask.numel())  # over the (B, T) steps
        self.log_epoch_value(f"{stage}/padding_ratio", ratio)
        return loss

    def _writes_step_values(self) -> bool:
        """Whether Lightning writes this training batch's step values to the loggers: every
        ``log_every_n_steps`` optimizer steps, when training is about to stop, and in fast_dev_run
        (as Lightning's logger connector decides; called once the batch's optimizer step is done)."""
        trainer = self.trainer
        every = trainer.log_every_n_steps
        return bool(trainer.fast_dev_run) or (every > 0 and (trainer.global_step % every == 0 or trainer.should_stop))

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        """Log ``train/loss`` and ``train/lr`` at the steps Lightning writes, and nowhere else.

        Logging every step would cost Lightning's ``self.log`` about half a millisecond of host
        time per call, and on a GPU a wait for the step's kernels: Lightning turns every step value
        shown in the progress bar into a number at every batch's end, and so would the loss's
        stale value between writes. So the loss is logged as a host copy, made when it is written
        (Lightning would wait for it then anyway), and the progress bar's loss changes at the same
        steps. Run after the callbacks' batch end, so that a stop they request (a diverged loss,
        the time limit) still logs the step Lightning then writes.
        """
        values, self._step_values = self._step_values, None
        if values is None or not self._writes_step_values():
            return
        loss = values["train/loss"].cpu()
        self.log("train/loss", loss, on_step=True, on_epoch=False, prog_bar=True, batch_size=1)
        self.log("train/lr", torch.tensor(float(values["train/lr"])), on_step=True, on_epoch=False, batch_size=1)

    def training_step(self, batch: Batch, batch_idx: int) -> torch.Tensor:
        return self._step(batch, "train")

    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        self._step(batch, "val")

    def test_step(self, batch: Batch, batch_idx: int) -> None:
        self._step(batch, "test")

    def on_fit_start(self) -> None:
        # A previous trainer.validate/test ran under inference mode and left metric states as
        # inference tensors, which fit's validation loop could not update in place.
        for module in self.modules():
            if isinstance(module, Metric):
                module.reset()

    # -- optimisation --------------------------------------------------------------------------

    def configure_optimizers(self) -> Any:
        options = dict(self.optimizer_config)
        if options.get("fused") == "auto":
            options["fused"] = self._fused_update_allowed(options)
        optimizer = instantiate(options, params=self.parameters())
        if self.scheduler_config is None:
            return optimizer
        options = dict(self.scheduler_config)
        lightning_keys = {k: options.pop(k) for k in LIGHTNING_SCHEDULER_KEYS if k in options}
        scheduler = instantiate(options, optimizer=optimizer)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, **lightning_keys}}

    def configure_gradient_clipping(
        self, optimizer: torch.optim.Optimizer, gradient_clip_val: float | None = None, gradient_clip_algorithm: str | None = None
    ) -> None:
        """Lightning's clipping, except by norm on a CPU: there the gradients are scaled only when
        their norm is over the limit. torch's ``clip_grad_norm_`` scales them at every step, by
        exactly 1 below the limit, so that a GPU need not wait for the norm; on a CPU that is a pass
        over every gradient, the embedding table's included, for nothing (the Brown tagger, whose
        norm stays under 1, steps in 0.98 x the time without it). The result is the same to the bit."""
        by_norm = gradient_clip_algorithm in (None, "norm")  # None: the trainer's default, by norm
        if not (gradient_clip_val and by_norm and self.device.type == "cpu"):
            super().configure_gradient_clipping(optimizer, gradient_clip_val, gradient_clip_algorithm)
            return
        # A CPU has no gradient scaler (Lightning runs fp16 AMP on GPUs only): the gradients are unscaled here.
        parameters = [p for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
        if not parameters:
            return
        norm = get_total_norm([p.grad for p in parameters])
        # clip_grad_norm_'s factor, min(1, clip / (norm + 1e-6)); a NaN norm scales, as there.
        if not gradient_clip_val / (float(norm) + 1e-6) >= 1.0:
            clip_grads_with_norm_(parameters, gradient_clip_val, norm)

    def _fused_update_allowed(self, options: dict[str, Any]) -> bool | None:
        """``fused: auto`` -> True: torch's fused update, one kernel over all parameters (on a CPU
        0.3-0.5 x the time of its loop over parameters for Adam, AdamW and SGD; most of the cost is
        the embedding table). None (torch's default update) where it cannot run: beside
        ``foreach: true``, and under mixed precision with gradient clipping, which Lightning refuses
        for a fused optimizer because it unscales the gradients inside its step, after clipping."""
        if options.get("foreach"):
            return None
        trainer = self._trainer
        if trainer is not None and isinstance(trainer.precision_plugin, MixedPrecision) and trainer.gradient_clip_val:
            return None
        return True

    # -- checkpoint payload --------------------------------------------------------------------

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["rnnlab"] = {"version": __version__, "config": self.run_config}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.run_config = checkpoint.get("rnnlab", {}).get("config")
