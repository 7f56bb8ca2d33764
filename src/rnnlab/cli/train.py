"""rnnlab-train: compose the config, fit, test the best checkpoint, write the run directory.

    rnnlab-train [overrides]          e.g. model/backbone=gru model.backbone.num_layers=2
    rnnlab-train -m seed=1,2,3        a multirun sweep

Prints the run directory on its last line; returns the best value of ``optimized_metric`` so
that Hydra sweepers can optimise it.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import hydra
import lightning as L
from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.utils import instantiate
from lightning.pytorch.loggers import Logger, TensorBoardLogger
from lightning.pytorch.plugins.environments import SLURMEnvironment
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig, ListConfig, OmegaConf, open_dict
from torch.utils.tensorboard.summary import hparams

from rnnlab.callbacks import BestValidationMetrics, DivergenceMonitor, ExactResume
from rnnlab.cli.common import CONFIG_DIR, find_user_error, report_user_errors
from rnnlab.cli.malloc import keep_freed_memory
from rnnlab.cli.run_files import now_iso, write_json, write_run_info
from rnnlab.errors import UserError
from rnnlab.sweeps.jobs import SweepJob, current_sweep_job, placed
from rnnlab.sweeps.optuna_search import OptunaPruning, check_direction, job_trial

log = logging.getLogger(__name__)

# Config sections that describe where and how a run is recorded, not the experiment itself.
NOT_HPARAMS = ("paths", "hydra", "callbacks", "logger", "ckpt_path", "resume", "task_name", "test", "sweep_job", "keep_freed_memory")


def build_callbacks(config: DictConfig | None, monitor: str, mode: str) -> list[L.Callback]:
    """Instantiate ``callbacks.*``; a null ``mode`` of a callback watching ``monitor`` becomes ``mode``."""
    callbacks = []
    for callback_config in (config or {}).values():
        options = {}
        if callback_config.get("monitor") == monitor and "mode" in callback_config and callback_config.mode is None:
            options["mode"] = mode
        callbacks.append(instantiate(callback_config, **options))
    return callbacks


def hparam_value(value: Any) -> bool | int | float | str:
    """A config value as TensorBoard's HParams dashboard can show it (lists and dicts as JSON)."""
    if isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (DictConfig, ListConfig)):
        value = OmegaConf.to_container(value, resolve=True)
    return json.dumps(value)


def run_hparams(cfg: DictConfig) -> dict[str, Any]:
    """What sets this run apart, for TensorBoard's HParams dashboard: ``seed`` and every key that
    the command line or the sweeper set, named as typed (``model/backbone: gru``,
    ``model.optimizer.lr: 0.003``, ``experiment: adding``) with the value the run used.

    Not the whole flattened config: the runs of a sweep then make one table with a column per
    swept or set key. Keys that only say where and how a run is recorded (NOT_HPARAMS) are left out.
    """
    params: dict[str, Any] = {"seed": cfg.seed}
    if not HydraConfig.initialized():
        return params
    hydra_cfg = HydraConfig.get()
    choices = hydra_cfg.runtime.choices
    for override in OverridesParser.create().parse_overrides(list(hydra_cfg.overrides.task)):
        key = override.key_or_group
        if override.is_delete() or re.split(r"[./]", key)[0] in NOT_HPARAMS:
            continue
        if override.package:  # a group placed elsewhere: +model/backbone@model.extra=gru
            key = f"{key}@{override.package}"
        params[key] = hparam_value(choices[key] if key in choices else OmegaConf.select(cfg, key))
    return params


@rank_zero_only
def log_hparams(loggers: list[Logger], params: dict[str, Any], record: dict[str, Any], step: int) -> None:
    """The run for TensorBoard's HParams dashboard: a session with ``params`` and the run's status,
    and the best epoch's validation metrics as ``best/val/*`` scalars (the dashboard shows a
    metric's last value, and ``val/*`` end at the last epoch, not the best).

    No experiment summary per run: TensorBoard takes one per log dir, so a run's own would hide
    the keys only other runs set. A sweep writes one for all its jobs (rnnlab.sweeps.summary);
    for runs without one TensorBoard gathers the keys of them all.
    """
    params = {**params, "status": record["status"]}
    best = {f"best/{k}": float(v) for k, v in record.items() if k.startswith("val/") and isinstance(v, (int, float))}
    for logger in loggers:
        if isinstance(logger, TensorBoardLogger):
            for tag, value in best.items():
                logger.experiment.add_scalar(tag, value, step)
            writer = logger.experiment._get_file_writer()  # as Lightning's own log_hyperparams does
            _, session_start, session_end = hparams(params, {})
            writer.add_summary(session_start)
            writer.add_summary(session_end)
            writer.flush()
        else:
            logger.log_hyperparams(params)
            logger.log_metrics(best, step)


def fit_and_test(cfg: DictConfig, record: dict[str, Any], params: dict[str, Any], job: SweepJob | None = None) -> None:
    """Everything between composing the config and writing metrics.json; fills ``record``.
    ``params``: the run's hyperparameters for TensorBoard (:func:`run_hparams`)."""
    if cfg.ckpt_path is not None and not Path(cfg.ckpt_path).is_file():
        raise UserError(f"ckpt_path={cfg.ckpt_path}: no such checkpoint file")
    ckpt_path = cfg.ckpt_path
    own_last = Path(cfg.paths.output_dir) / "checkpoints" / "last.ckpt"
    if ckpt_path is None and cfg.get("resume") and own_last.is_file():
        ckpt_path = str(own_last)
    L.seed_everything(cfg.seed, workers=True)
    datamodule = instantiate(cfg.data)
    datamodule.setup("fit")
    if cfg.test:  # read and check the test data now, not after hours of training
        datamodule.setup("test")
    model = instantiate(cfg.model, data_spec=datamodule.spec)
    monitor = cfg.optimized_metric or model.default_monitor
    mode = model.metric_mode(monitor)
    record.update(optimized_metric=monitor, optimized_mode=mode)
    with open_dict(cfg):
        cfg.optimized_metric = monitor  # callbacks' ${optimized_metric} resolve to the task's default

    best_val, divergence = BestValidationMetrics(monitor, mode), DivergenceMonitor()
    exact_resume = ExactResume(own_last, seed=cfg.seed)  # SIGTERM/Ctrl-C: last.ckpt mid-epoch, resumable exactly
    callbacks = [*build_callbacks(cfg.get("callbacks"), monitor, mode), best_val, divergence, exact_resume]
    trial = job_trial(HydraConfig.get(), job.number) if job is not None else None
    pruning = OptunaPruning(trial, monitor) if trial is not None else None
    if pruning is not None:
        check_direction(trial, monitor, mode)
        callbacks.append(pruning)
    loggers = [instantiate(logger) for logger in (cfg.get("logger") or {}).values()]
    # default_root_dir: where tasks write their reports (e.g. the tagger's test_report.json).
    # A job that SLURM starts through submitit: submitit requeues it (resume=true), not Lightning.
    scheduled = {"plugins": [SLURMEnvironment(auto_requeue=False)]} if job is not None and job.scheduled else {}
    trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False, default_root_dir=cfg.paths.output_dir, **scheduled)
    model.run_config = OmegaConf.to_container(cfg, resolve=True)

    trainer.fit(model, datamodule=datamodule, ckpt_path=ckpt_path)
    # epoch and best_epoch count from 0, as in checkpoints and TensorBoard; epoch = last completed.
    record.update(best_val.best, epoch=trainer.current_epoch - 1, global_step=trainer.global_step, best_epoch=best_val.best_epoch)
    if pruning is not None and pruning.pruned:  # an unpromising Optuna trial: not worth testing
        record.update(status="pruned", pruned_at_epoch=pruning.pruned_at_epoch)
        log_hparams(loggers, params, record, trainer.global_step)
        return
    if cfg.test:
        best = next((cb for cb in trainer.checkpoint_callbacks if cb.monitor == monitor), None)
        best_path = best.best_model_path if best else ""
        results = trainer.test(model, datamodule=datamodule, ckpt_path=best_path or None, verbose=False)
        record.update(results[0])
        record["test_checkpoint"] = best_path or "final weights"
    record["status"] = "diverged" if divergence.diverged else "completed"
    if divergence.diverged:
        record["diverged_at_step"] = divergence.diverged_at_step
    log_hparams(loggers, params, record, trainer.global_step)


def train(cfg: DictConfig, job: SweepJob | None = None) -> dict[str, Any]:
    """Run one experiment; metrics.json and run_info.json are written even when it fails.

    A sweep job first takes its share of the machine (threads, a leased device: rnnlab.sweeps.jobs).
    """
    run_dir = Path(cfg.paths.output_dir)
    started, clock = now_iso(), time.monotonic()
    record: dict[str, Any] = {"status": "failed"}
    params = run_hparams(cfg)
    placement = None
    freed_memory_kept = False
    try:
        if not isinstance(cfg.keep_freed_memory, bool):
            raise UserError(f"keep_freed_memory must be true or false; got {cfg.keep_freed_memory!r}")
        freed_memory_kept = cfg.keep_freed_memory and keep_freed_memory()
        with placed(cfg, job) if job is not None else nullcontext() as placement:
            fit_and_test(cfg, record, params, job)
    except BaseException as exc:
        record["status"] = "failed"
        # Lightning turns Ctrl-C / SIGTERM (rnnlab.callbacks.resume) into SystemExit(1): name the cause.
        cause = exc.__context__ if isinstance(exc, SystemExit) and isinstance(exc.__context__, KeyboardInterrupt) else exc
        record["error"] = f"interrupted: {cause}" if isinstance(cause, KeyboardInterrupt) else f"{type(exc).__name__}: {exc}"
        raise
    finally:
        if rank_zero_only.rank == 0:  # under DDP every rank runs this function
            extra = {"hparams": params, "freed_memory_kept": freed_memory_kept,
                     **({"sweep_job": placement.as_record()} if placement is not None else {})}
            write_json(run_dir / "metrics.json", record)
            write_run_info(run_dir, cfg.seed, started, now_iso(), record["status"], time.monotonic() - clock, **extra)
    return record


def report_failed_job(job: SweepJob, exc: Exception) -> None:
    """A sweep goes on past a failed job: say which job failed and why (bugs with their traceback,
    which also lands in the job's log file), and let the sweep summary count it."""
    user_error = find_user_error(exc)
    where = f"job {job.number} ({' '.join(job.overrides) or 'no overrides'})"
    if user_error is not None:
        print(f"rnnlab-train: error: {where}: {str(user_error).strip()}", file=sys.stderr, flush=True)
    else:
        log.exception(f"{where} failed; the sweep goes on")


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="train")
@report_user_errors("rnnlab-train")
def main(cfg: DictConfig) -> float | None:
    job = current_sweep_job()
    if job is None:
        record = train(cfg)
    else:
        try:
            record = train(cfg, job)
        except Exception as exc:  # KeyboardInterrupt still stops the whole sweep
            report_failed_job(job, exc)
            return None
    if rank_zero_only.rank != 0:
        return None
    summary = {k: round(v, 4) for k, v in record.items() if k.startswith("test/") and isinstance(v, float)}
    print(f"status: {record['status']}  test: {json.dumps(summary)}")
    print(cfg.paths.output_dir, flush=True)
    value = record.get(record.get("optimized_metric", ""))
    return float(value) if value is not None and record["status"] == "completed" else None


if __name__ == "__main__":
    main()
