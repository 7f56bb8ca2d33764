"""The table at the end of every sweep: each job's overrides, status and optimized metric.

Read from the job directories themselves (``.hydra/overrides.yaml`` + ``metrics.json``), so it
covers every job in the sweep directory: those of an earlier, interrupted invocation of a resumed
search too, and jobs killed before they wrote metrics.json (status ``missing``).
"""

from __future__ import annotations

import csv
import json
import math
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from rnnlab.markdown import markdown_table

#: metrics.json statuses; ``missing``: a job directory without one (the job was killed).
STATUSES = ("completed", "pruned", "diverged", "failed", "missing")
SUMMARY_MARKDOWN = "sweep_summary.md"
SUMMARY_CSV = "sweep_summary.csv"


@dataclass
class JobResult:
    """One job directory of a sweep, as its files tell it."""

    job: str
    directory: Path
    overrides: list[str]
    metrics: dict[str, Any]

    @property
    def status(self) -> str:
        return str(self.metrics.get("status", "missing"))

    def value(self, name: str) -> float | None:
        value = self.metrics.get(name)
        return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else None

    @property
    def error(self) -> str:
        """The recorded error on one line (at most 200 characters); empty when there is none."""
        return str(self.metrics.get("error", "")).replace("\n", " ")[:200]


def job_sort_key(job: JobResult) -> tuple[tuple[int, int | str], ...]:
    """Numbered jobs in number order, then named ones; path by path (``sweep/2`` before ``sweep/10``)."""
    return tuple((0, int(part)) if part.isdigit() else (1, part) for part in job.job.split("/"))


def collect_jobs(sweep_dir: Path) -> list[JobResult]:
    """Every run directory under ``sweep_dir`` (any ``hydra.sweep.subdir`` layout), in job order.

    A run directory is one with ``.hydra/overrides.yaml``, at any depth, so ``sweep_dir`` may also
    be a tree of runs and sweeps (``outputs/``) or a single run directory. Each is named by its path
    relative to ``sweep_dir`` (its own name when it is ``sweep_dir`` itself).
    """
    jobs = []
    for overrides_file in sweep_dir.glob("**/.hydra/overrides.yaml"):
        directory = overrides_file.parent.parent
        overrides = yaml.safe_load(overrides_file.read_text(encoding="utf-8")) or []
        try:
            metrics = json.loads((directory / "metrics.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            metrics = {}
        name = directory.relative_to(sweep_dir).as_posix() if directory != sweep_dir else directory.resolve().name
        jobs.append(JobResult(name, directory, [str(o) for o in overrides], metrics))
    return sorted(jobs, key=job_sort_key)


@dataclass
class SweepSummary:
    """The jobs of one sweep, its optimized metric and direction, and the best completed job."""

    sweep_dir: Path
    jobs: list[JobResult]

    @property
    def metric(self) -> str | None:
        names = Counter(job.metrics["optimized_metric"] for job in self.jobs if job.metrics.get("optimized_metric"))
        return names.most_common(1)[0][0] if names else None

    @property
    def mode(self) -> str:
        modes = Counter(job.metrics["optimized_mode"] for job in self.jobs if job.metrics.get("optimized_mode"))
        return modes.most_common(1)[0][0] if modes else "min"

    @property
    def counts(self) -> Counter[str]:
        return Counter(job.status for job in self.jobs)

    @property
    def best(self) -> JobResult | None:
        metric = self.metric
        scored = [job for job in self.jobs if job.status == "completed" and metric and job.value(metric) is not None]
        if not scored:
            return None
        sign = 1.0 if self.mode == "max" else -1.0
        return max(scored, key=lambda job: sign * job.value(metric))  # type: ignore[arg-type, operator]

    @property
    def common_overrides(self) -> list[str]:
        """Overrides every job shares (shown once); the table shows each job's own."""
        if not self.jobs:
            return []
        shared = set(self.jobs[0].overrides).intersection(*(job.overrides for job in self.jobs[1:]))
        return [override for override in self.jobs[0].overrides if override in shared] if len(self.jobs) > 1 else []

    def rows(self) -> list[dict[str, str]]:
        metric, best, common = self.metric, self.best, set(self.common_overrides)
        test_metric = f"test/{metric.split('/', 1)[1]}" if metric and "/" in metric else None
        rows = []
        for job in self.jobs:
            own = [override for override in job.overrides if override not in common]
            row = {"job": job.job, "overrides": " ".join(own), "status": job.status}
            if metric:
                row[metric] = format_value(job.value(metric))
            if test_metric:
                row[test_metric] = format_value(job.value(test_metric))
            row["best"] = "*" if job is best else ""
            row["error"] = job.error
            rows.append(row)
        return rows

    def line(self) -> str:
        """One line: how many jobs ended how, and the best job."""
        counts = self.counts
        parts = ", ".join(f"{counts[status]} {status}" for status in STATUSES if counts[status])
        text = f"sweep: {len(self.jobs)} jobs: {parts or 'none ran'}"
        best, metric = self.best, self.metric
        if best is not None and metric:
            own = [override for override in best.overrides if override not in set(self.common_overrides)]
            text += f"; best {metric} = {format_value(best.value(metric))} (job {best.job}: {' '.join(own) or 'no overrides'})"
        return text

    def markdown(self) -> str:
        rows = self.rows()
        if not rows:
            return "(no jobs)\n"
        header = list(rows[0])
        lines = [f"Overrides of every job: {' '.join(self.common_overrides)}", ""] if self.common_overrides else []
        lines.append(markdown_table(header, [[row[key] for key in header] for row in rows]))
        return "\n".join(lines) + "\n"

    def write(self) -> tuple[Path, Path]:
        """sweep_summary.md (the table and the line) and sweep_summary.csv in the sweep directory."""
        markdown_path, csv_path = self.sweep_dir / SUMMARY_MARKDOWN, self.sweep_dir / SUMMARY_CSV
        markdown_path.write_text(f"# Sweep {self.sweep_dir}\n\n{self.markdown()}\n{self.line()}\n", encoding="utf-8")
        rows = self.rows()
        with csv_path.open("w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(rows[0]) if rows else ["job", "overrides", "status"])
            writer.writeheader()
            writer.writerows(rows)
        return markdown_path, csv_path

    def write_hparams_experiment(self) -> Path | None:
        """One TensorBoard HParams experiment for the whole sweep, in ``<sweep dir>/hparams/``: the
        union of the keys the jobs logged (run_info.json ``hparams``, plus ``status``) and their
        ``best/val/*`` and ``test/*`` metrics, so that the dashboard's table has a column for every
        key any job set (without it TensorBoard would take one job's keys for all). None when no
        job logged to TensorBoard (e.g. logger=none)."""
        from torch.utils.tensorboard import SummaryWriter
        from torch.utils.tensorboard.summary import hparams

        params: dict[str, Any] = {}
        metrics: set[str] = set()
        for job in self.jobs:
            if not (job.directory / "tensorboard").is_dir():
                continue
            try:
                logged = json.loads((job.directory / "run_info.json").read_text(encoding="utf-8")).get("hparams") or {}
            except (OSError, ValueError):
                continue
            for key, value in {**logged, "status": job.status}.items():
                params.setdefault(key, value)
            metrics.update(f"best/{k}" if k.startswith("val/") else k for k in job.metrics if k.startswith(("val/", "test/")))
        if not params:
            return None
        experiment, _, _ = hparams(params, {name: 0.0 for name in sorted(metrics)})
        directory = self.sweep_dir / "hparams"
        with SummaryWriter(str(directory)) as writer:
            writer._get_file_writer().add_summary(experiment)  # as torch's own add_hparams does
        return directory


def format_value(value: float | None) -> str:
    return "" if value is None else f"{value:.4g}"


def summarize(sweep_dir: Path) -> SweepSummary:
    return SweepSummary(sweep_dir, collect_jobs(sweep_dir))
