"""Hydra callbacks (conf/hydra/default.yaml): checks that must run before Hydra writes anything."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig


class ProtectFinishedRuns(Callback):
    """Refuse a ``hydra.run.dir`` that holds a finished run, before Hydra overwrites its ``.hydra/``.

    A run that failed may be re-run (or resumed) in its own directory; a completed or diverged run,
    or an evaluation, is never overwritten.
    """

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        run_dir = Path(str(config.hydra.run.dir))
        metrics_file = run_dir / "metrics.json"
        if not metrics_file.is_file():
            return
        try:
            status = json.loads(metrics_file.read_text(encoding="utf-8")).get("status")
        except (OSError, ValueError):
            status = None
        if status == "failed":
            return
        print(
            f"rnnlab-{config.hydra.job.name}: error: {run_dir} already holds a finished run "
            f"({metrics_file}); choose another hydra.run.dir",
            file=sys.stderr,
            flush=True,
        )
        sys.exit(2)


class SweepSummaryReport(Callback):
    """At the end of a sweep: print and save the job table; exit 1 when the sweep went wrong.

    A grid sweep went wrong when any job failed, diverged or left no record. An Optuna search
    explores, so failed or diverged trials are expected there: it went wrong when every trial did.
    """

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        from rnnlab.sweeps.summary import summarize  # here: Hydra imports callbacks before every command

        sweep_dir = Path(str(config.hydra.sweep.dir))
        summary = summarize(sweep_dir)
        markdown_path, _ = summary.write()
        summary.write_hparams_experiment()
        print(summary.markdown(), flush=True)
        print(f"{summary.line()}  [{markdown_path}]", flush=True)
        print(sweep_dir, flush=True)
        searched = str(config.hydra.sweeper.get("_target_", "")).endswith("OptunaSweeper")
        went_wrong = summary.counts["completed"] + summary.counts["pruned"] == 0 if searched else any(summary.counts[s] for s in ("failed", "diverged", "missing"))
        if went_wrong:
            sys.exit(1)
