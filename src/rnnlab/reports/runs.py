"""The runs under a directory, grouped by what they were run with, and each metric's statistics.

A run is any directory with ``.hydra/overrides.yaml`` (found by the sweep summary's scanner,
:func:`rnnlab.sweeps.summary.collect_jobs`): single runs, grid-sweep jobs and search trials alike.
Runs whose overrides differ only in ``seed`` (and in keys that cannot change results, such as the
progress bar or the logger) form one group; ``group_by`` groups by the named keys instead. Only
``completed`` runs count towards a group's statistics; the others (failed, diverged, pruned, or
without ``metrics.json``) are listed as left out, with the reason.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np

from rnnlab.errors import UserError
from rnnlab.sweeps.summary import JobResult, collect_jobs

#: Override keys that never change a run's results; a key matches them and everything below it
#: (``hydra`` covers ``hydra.launcher.n_jobs``, ``logger`` covers ``logger=csv``). ``seed`` is
#: here because the runs of a group are its seeds.
NON_RESULT_KEYS = (
    "seed",
    "hydra",
    "logger",
    "trainer.enable_progress_bar",
    "trainer.enable_model_summary",
    "trainer.log_every_n_steps",
    "data.num_workers",
    "sweep_job",
    "tags",
)

#: Parts of a metric name (split on ``_`` after the split prefix) that mean lower is better.
LOWER_IS_BETTER = frozenset({"loss", "ter", "mae", "rmse", "mse", "mase", "ppl", "error"})

#: Metrics left out of the default selection (bookkeeping, not results).
NOT_RESULTS = frozenset({"padding_ratio"})

#: The label of a group that has no overrides beyond those every run shares.
DEFAULTS_LABEL = "(defaults)"


def override_key(override: str) -> str:
    """The config key an override sets: ``+data.x=1`` -> ``data.x``, ``model/backbone=lstm`` -> ``model/backbone``."""
    return override.split("=", 1)[0].lstrip("+~")


def affects_results(override: str) -> bool:
    """False for overrides of :data:`NON_RESULT_KEYS` (and the keys below them)."""
    key = override_key(override)
    return not any(key == name or key.startswith((f"{name}.", f"{name}/")) for name in NON_RESULT_KEYS)


def metric_mode(metric: str, optimized: Mapping[str, str]) -> str:
    """``"min"`` or ``"max"``: which way ``metric`` (``val/acc``, ``test/ter``, ...) is better.

    ``optimized`` maps the runs' ``optimized_metric`` to their ``optimized_mode``. A metric that is
    an optimized metric, in any split (``test/ter`` for ``val/ter``), takes that mode. Otherwise the
    name decides: lower is better when a ``_``-separated part of it is in :data:`LOWER_IS_BETTER`
    (``loss``, ``mae_mean``, ``ppl``, ...), higher for everything else (``acc``, ``f1_macro``, ``bleu``).
    """
    name = metric.split("/", 1)[-1]
    for optimized_metric, mode in optimized.items():
        if optimized_metric.split("/", 1)[-1] == name:
            return mode
    return "min" if LOWER_IS_BETTER.intersection(name.split("_")) else "max"


@dataclass(frozen=True)
class Stats:
    """One metric over the counted runs of one group.

    ``values``: (n,) the finite values, n >= 1, in run order; ``mode``: ``min``/``max``.
    """

    values: tuple[float, ...]
    mode: str

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def mean(self) -> float:
        return float(np.mean(self.values))

    @property
    def std(self) -> float | None:
        """Sample standard deviation (ddof=1); None for a single run."""
        return float(np.std(self.values, ddof=1)) if self.n > 1 else None

    @property
    def best(self) -> float:
        """The best single run: the max or the min by ``mode``."""
        return max(self.values) if self.mode == "max" else min(self.values)


@dataclass(eq=False)
class Group:
    """Runs that share their grouping overrides.

    ``key``: the grouping overrides (``key=value``), sorted; ``label``: what the table shows.
    Compared by identity.
    """

    key: tuple[str, ...]
    label: str
    runs: list[JobResult] = field(default_factory=list)

    @property
    def counted(self) -> list[JobResult]:
        """The runs whose metrics count: those that completed."""
        return [run for run in self.runs if run.status == "completed"]

    def stats(self, metric: str, mode: str) -> Stats | None:
        """``metric`` over the counted runs that have a finite value of it; None when none has."""
        values = tuple(value for run in self.counted if (value := run.value(metric)) is not None)
        return Stats(values, mode) if values else None


@dataclass(frozen=True)
class LeftOut:
    """A run left out of a group's statistics: all of them (``status`` not completed), or some metrics."""

    run: str
    group: str
    status: str
    reason: str


@dataclass
class Report:
    """Grouped runs under ``root`` and the metrics to show.

    ``modes``: metric -> ``min``/``max``; ``common``: the overrides that affect results and that
    every run shares (shown once, not in the labels); ``pooled``: keys that affect results but vary
    inside a group (only with ``group_by``).
    """

    root: Path
    runs: list[JobResult]
    groups: list[Group]
    metrics: list[str]
    modes: dict[str, str]
    common: list[str]
    group_by: list[str] | None
    pooled: list[str]

    def stats(self, group: Group, metric: str) -> Stats | None:
        return group.stats(metric, self.modes[metric])

    @cached_property
    def best(self) -> dict[str, list[Group]]:
        """Per metric, the group(s) with the best mean (ties: all of them; none when no group has the metric)."""
        best: dict[str, list[Group]] = {}
        for metric in self.metrics:
            means = {id(group): stats.mean for group in self.groups if (stats := self.stats(group, metric))}
            target = (max if self.modes[metric] == "max" else min)(means.values(), default=None)
            best[metric] = [group for group in self.groups if target is not None and means.get(id(group)) == target]
        return best

    def left_out(self) -> list[LeftOut]:
        """Runs that did not complete, then completed runs without some of the metrics."""
        rows, partial = [], []
        for group in self.groups:
            for run in group.runs:
                if run.status != "completed":
                    rows.append(LeftOut(run.job, group.label, run.status, why_not_counted(run)))
                elif missing := [metric for metric in self.metrics if run.value(metric) is None]:
                    reason = f"no value for {', '.join(missing)} (left out of those columns only)"
                    partial.append(LeftOut(run.job, group.label, run.status, reason))
        return rows + partial


def why_not_counted(run: JobResult) -> str:
    """One line on why a run that did not complete is left out."""
    metrics = run.metrics
    if run.status == "missing":
        return "no metrics.json (killed, or still running)"
    if run.status == "diverged":
        return f"training loss not finite at step {metrics.get('diverged_at_step', '?')}"
    if run.status == "pruned":
        return f"pruned by the search at epoch {metrics.get('pruned_at_epoch', '?')}"
    return run.error or run.status


def metric_names(runs: Sequence[JobResult]) -> list[str]:
    """The ``val/*`` and ``test/*`` names with a number in some run's metrics.json: test first, then val, sorted."""
    names = {
        name
        for run in runs
        for name, value in run.metrics.items()
        if name.startswith(("test/", "val/")) and isinstance(value, (int, float)) and not isinstance(value, bool)
    }
    return sorted(names, key=lambda name: (not name.startswith("test/"), name))


def choose_metrics(runs: Sequence[JobResult], requested: Sequence[str] | None) -> list[str]:
    """``requested`` (checked against the runs), or by default every result metric of the completed runs."""
    if requested:
        known = metric_names(runs)
        unknown = [metric for metric in requested if metric not in known]
        if unknown:
            raise UserError(f"unknown metric {', '.join(unknown)}; the runs have: {', '.join(known) or 'none'}")
        return list(dict.fromkeys(requested))
    completed = [run for run in runs if run.status == "completed"]
    return [name for name in metric_names(completed) if name.split("/", 1)[1] not in NOT_RESULTS]


def grouping_overrides(run: JobResult, group_by: Sequence[str] | None) -> list[str]:
    """The overrides that place ``run`` in its group, in the run's order (``group_by``: in that order)."""
    if group_by is None:
        return [override for override in run.overrides if affects_results(override)]
    own = {override_key(override): override for override in run.overrides}
    return [own.get(key, f"{key}={DEFAULTS_LABEL}") for key in group_by]


def build_report(root: Path, metrics: Sequence[str] | None = None, group_by: Sequence[str] | None = None) -> Report:
    """Scan ``root``, group its runs and choose the metrics (default: all test/* then val/*).

    Raises ``UserError`` when ``root`` holds no run, or a metric or ``group_by`` key is unknown.
    """
    if not root.is_dir():
        raise UserError(f"{root}: no such directory")
    runs = collect_jobs(root)
    if not runs:
        raise UserError(f"{root}: no runs found (no directory below it has .hydra/overrides.yaml)")
    if group_by is not None:
        keys = {override_key(override) for run in runs for override in run.overrides}
        unknown = [key for key in group_by if key not in keys]
        if unknown:
            raise UserError(f"unknown --group-by key {', '.join(unknown)}; the runs override: {', '.join(sorted(keys))}")
    chosen = choose_metrics(runs, metrics)
    optimized: dict[str, str] = {}
    for run in runs:
        if run.metrics.get("optimized_metric") and run.metrics.get("optimized_mode") in ("min", "max"):
            optimized.setdefault(str(run.metrics["optimized_metric"]), str(run.metrics["optimized_mode"]))

    results = [[override for override in run.overrides if affects_results(override)] for run in runs]
    shared = set(results[0]).intersection(*results[1:])
    common = [override for override in results[0] if override in shared]
    groups: dict[tuple[str, ...], Group] = {}
    for run in runs:
        overrides = grouping_overrides(run, group_by)
        key = tuple(sorted(overrides))
        if key not in groups:
            shown = overrides if group_by is not None else [override for override in overrides if override not in shared]
            groups[key] = Group(key, " ".join(shown) or DEFAULTS_LABEL)
        groups[key].runs.append(run)
    return Report(
        root=root,
        runs=runs,
        groups=list(groups.values()),
        metrics=chosen,
        modes={metric: metric_mode(metric, optimized) for metric in chosen},
        common=common,
        group_by=list(group_by) if group_by is not None else None,
        pooled=pooled_keys(groups.values()),
    )


def pooled_keys(groups: Iterable[Group]) -> list[str]:
    """Keys that affect results and whose override differs between runs of one group (sorted)."""
    pooled: set[str] = set()
    for group in groups:
        settings = [{override_key(o): o for o in run.overrides if affects_results(o)} for run in group.runs]
        keys = set().union(*settings)
        pooled.update(key for key in keys if len({setting.get(key) for setting in settings}) > 1)
    return sorted(pooled)
