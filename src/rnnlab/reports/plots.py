"""Learning curves from the runs' TensorBoard event files and a bar chart per metric, as PNG.

``curves_<metric>.png`` (``val/acc`` -> ``curves_val_acc.png``): one line per group, the mean
over its counted runs at each epoch, and a band (min-max or ± sample std) across them; a run that
stopped early (early stopping) leaves the later epochs to the others. ``bar_<metric>.png``: per
group the mean of the final metric (metrics.json), the band as error bar, each run as a dot, the
best group in another colour.

Figures are built on :class:`matplotlib.figure.Figure` without pyplot (no global state, headless).
"""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from tensorboard.backend.event_processing.event_accumulator import (
    AUDIO,
    COMPRESSED_HISTOGRAMS,
    HISTOGRAMS,
    IMAGES,
    SCALARS,
    TENSORS,
    EventAccumulator,
    ScalarEvent,
)

from rnnlab.reports.runs import Group, Report
from rnnlab.sweeps.summary import JobResult

BAND_NAMES = {"minmax": "min–max", "std": "± std"}
#: Keep every scalar, and as little as possible of the media the tasks also log.
SIZE_GUIDANCE = {SCALARS: 0, IMAGES: 1, AUDIO: 1, HISTOGRAMS: 1, COMPRESSED_HISTOGRAMS: 1, TENSORS: 1}


def read_scalars(run_dir: Path) -> dict[str, list[ScalarEvent]]:
    """Every scalar tag of the event files under ``run_dir/tensorboard`` (nested ``version_*`` too).

    Events of several files (a resumed run) are merged in wall-time order.
    """
    scalars: dict[str, list[ScalarEvent]] = {}
    for path in sorted((run_dir / "tensorboard").rglob("events.out.tfevents.*")):
        accumulator = EventAccumulator(str(path), size_guidance=SIZE_GUIDANCE)
        accumulator.Reload()
        for tag in accumulator.Tags()[SCALARS]:
            scalars.setdefault(tag, []).extend(accumulator.Scalars(tag))
    return {tag: sorted(events, key=lambda event: event.wall_time) for tag, events in scalars.items()}


def epoch_curve(scalars: dict[str, list[ScalarEvent]], tag: str) -> dict[int, float]:
    """``tag``'s value at each epoch: {epoch: value}, the last one logged for a repeated epoch.

    Lightning logs at the global step, with an ``epoch`` scalar at the same step in the same call:
    a value's epoch is that of the ``epoch`` event at its step nearest in wall time (a value with
    none at its step is skipped). Without any ``epoch`` events the k-th value is epoch k
    (validation every epoch).
    """
    epochs: dict[int, list[ScalarEvent]] = {}
    for event in scalars.get("epoch", []):
        epochs.setdefault(event.step, []).append(event)
    curve: dict[int, float] = {}
    for index, event in enumerate(scalars.get(tag, [])):
        if not epochs:
            curve[index] = event.value
        elif event.step in epochs:
            epoch = min(epochs[event.step], key=lambda candidate: abs(candidate.wall_time - event.wall_time))
            curve[int(epoch.value)] = event.value
    return curve


@dataclass(frozen=True)
class Band:
    """A group's curve: ``x`` (E,) epochs; ``mean``, ``low``, ``high`` (E,); ``n`` (E,) runs at each epoch."""

    x: np.ndarray
    mean: np.ndarray
    low: np.ndarray
    high: np.ndarray
    n: np.ndarray


def spread(values: Sequence[float], band: str) -> tuple[float, float, float]:
    """(mean, low, high): the band is min-max, or mean ± sample std (zero width for one value)."""
    array = np.asarray(values, dtype=float)
    mean = float(array.mean())
    if band == "minmax":
        return mean, float(array.min()), float(array.max())
    std = float(array.std(ddof=1)) if array.size > 1 else 0.0
    return mean, mean - std, mean + std


def group_band(curves: Sequence[dict[int, float]], band: str) -> Band | None:
    """The runs' curves of one group combined epoch by epoch; None when no run has a point."""
    x = sorted(set().union(*curves)) if curves else []
    if not x:
        return None
    rows = [[curve[epoch] for curve in curves if epoch in curve] for epoch in x]
    mean, low, high = (np.array(column) for column in zip(*(spread(row, band) for row in rows)))
    return Band(np.array(x), mean, low, high, np.array([len(row) for row in rows]))


def file_name(kind: str, metric: str) -> str:
    """``curves``, ``val/acc`` -> ``curves_val_acc.png``."""
    return f"{kind}_{metric.replace('/', '_')}.png"


def wrap(label: str, width: int) -> str:
    """A long group label on several lines, broken between overrides."""
    return "\n".join(textwrap.wrap(label, width, break_long_words=False, break_on_hyphens=False))


def spans_decades(low: float, high: float) -> bool:
    """Whether positive values from ``low`` to ``high`` read better on a log axis (more than two decades)."""
    return low > 0 and high / low > 100


def plot_curves(report: Report, scalars: dict[str, dict[str, list[ScalarEvent]]], metric: str, band: str, path: Path) -> bool:
    """``curves_<metric>.png``; ``scalars``: run name -> its scalars. False (nothing written) without data.

    The y axis is logarithmic when the values span more than two decades (:func:`spans_decades`).
    """
    bands: list[tuple[Group, Band]] = []
    for group in report.groups:
        curves = [curve for run in group.counted if (curve := epoch_curve(scalars[run.job], metric))]
        if (result := group_band(curves, band)) is not None:
            bands.append((group, result))
    if not bands:
        return False
    labels = [wrap(f"{group.label} (n={result.n.max()})", 100) for group, result in bands]
    figure = Figure(figsize=(8, 4 + 0.22 * sum(label.count("\n") + 1 for label in labels)), layout="constrained")
    axes = figure.add_subplot()
    for (_, result), label in zip(bands, labels):
        (line,) = axes.plot(result.x, result.mean, marker="o", markersize=3, label=label)
        axes.fill_between(result.x, result.low, result.high, color=line.get_color(), alpha=0.2, linewidth=0)
    low = min(result.low.min() for _, result in bands)
    high = max(result.high.max() for _, result in bands)
    if spans_decades(low, high):
        axes.set_yscale("log")
    axes.set(xlabel="epoch", ylabel=metric, title=f"{metric}: mean over runs, band {BAND_NAMES[band]}")
    axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes.grid(alpha=0.3)
    figure.legend(loc="outside lower center", fontsize="small")
    figure.savefig(path, dpi=120)
    return True


def plot_bars(report: Report, metric: str, band: str, path: Path) -> bool:
    """``bar_<metric>.png``: one horizontal bar per group with a value. False (nothing written) without any.

    The value axis is logarithmic when the values span more than two decades (:func:`spans_decades`).
    """
    rows = [(group, stats) for group in report.groups if (stats := report.stats(group, metric)) is not None]
    if not rows:
        return False
    best = report.best[metric]
    labels = [wrap(f"{group.label} (n={stats.n})", 45) for group, stats in rows]
    figure = Figure(figsize=(9, 1.5 + 0.3 * sum(label.count("\n") + 1.5 for label in labels)), layout="constrained")
    axes = figure.add_subplot()
    y = np.arange(len(rows))
    spreads = [spread(stats.values, band) for _, stats in rows]
    means = np.array([mean for mean, _, _ in spreads])
    error = np.array([[mean - low for mean, low, _ in spreads], [high - mean for mean, _, high in spreads]])
    colours = ["tab:orange" if group in best else "tab:blue" for group, _ in rows]
    axes.barh(y, means, xerr=error, color=colours, alpha=0.8, capsize=3)
    for row, (_, stats) in enumerate(rows):
        axes.plot(stats.values, np.full(stats.n, row), "k.", markersize=4)
    axes.set_yticks(y, labels, fontsize="small")
    if spans_decades(min(low for _, low, _ in spreads), max(high for _, _, high in spreads)):
        axes.set_xscale("log")
    axes.invert_yaxis()
    better = "higher" if report.modes[metric] == "max" else "lower"
    axes.set(xlabel=f"{metric}: mean, error bar {BAND_NAMES[band]}, dots: runs", title=f"{metric} ({better} is better; orange: best group)")
    axes.grid(axis="x", alpha=0.3)
    figure.savefig(path, dpi=120)
    return True


def curve_metrics(metrics: Sequence[str]) -> list[str]:
    """The validation curves to draw for the chosen metrics: ``test/acc`` and ``val/acc`` -> ``val/acc``."""
    return list(dict.fromkeys(f"val/{metric.split('/', 1)[1]}" for metric in metrics))


def write_plots(report: Report, out_dir: Path, band: str = "minmax") -> tuple[list[Path], list[str]]:
    """Curves for the chosen metrics' validation versions, a bar chart per chosen metric.

    Returns (the files written, a note for each plot left out for want of data).
    """
    counted: list[JobResult] = [run for group in report.groups for run in group.counted]
    scalars = {run.job: read_scalars(run.directory) for run in counted}
    written, notes = [], []
    for metric in curve_metrics(report.metrics):
        path = out_dir / file_name("curves", metric)
        if plot_curves(report, scalars, metric, band, path):
            written.append(path)
        else:
            notes.append(f"no curve of {metric}: no counted run logged it to TensorBoard")
    for metric in report.metrics:
        path = out_dir / file_name("bar", metric)
        if plot_bars(report, metric, band, path):
            written.append(path)
        else:
            notes.append(f"no bar chart of {metric}: no counted run has it")
    return written, notes
