"""A finished run in a Python session or notebook: ``rnnlab.load_run(run_dir)``.

    run = rnnlab.load_run("outputs/runs/2026-11-24_10-00-00_ab12cd")
    run.model            # the trained LightningModule (best checkpoint), in eval mode
    run.config           # the run's composed config (.hydra/config.yaml, as in the checkpoint)
    run.datamodule       # its data module, with the checkpoint's vocabulary and labels
    run.datamodule.setup("test"); lightning.Trainer().test(run.model, datamodule=run.datamodule)
    run.metrics          # metrics.json
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from rnnlab.cli.common import datamodule_for, load_checkpoint_task
from rnnlab.errors import UserError


@dataclass
class LoadedRun:
    directory: Path
    checkpoint: Path
    model: Any
    config: DictConfig
    datamodule: Any
    metrics: dict[str, Any]


def load_run(run_dir: str | Path, checkpoint: str = "best", map_location: str = "cpu") -> LoadedRun:
    """The trained module, config, data module and metrics of a run directory.

    ``checkpoint``: ``best`` or ``last`` (``checkpoints/<name>.ckpt``), or a path to a checkpoint.
    The data module is built but not set up: call ``setup("fit" | "test" | ...)`` for the splits.
    """
    directory = Path(run_dir)
    if not directory.is_dir():
        raise UserError(f"{directory}: no such run directory")
    path = Path(checkpoint) if checkpoint not in ("best", "last") else directory / "checkpoints" / f"{checkpoint}.ckpt"
    model, config = load_checkpoint_task(str(path), map_location=map_location)
    metrics_file = directory / "metrics.json"
    metrics = json.loads(metrics_file.read_text(encoding="utf-8")) if metrics_file.is_file() else {}
    return LoadedRun(directory, path, model, OmegaConf.create(config), datamodule_for(model, config), metrics)
