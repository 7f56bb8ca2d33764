"""Scalars, text tables, histograms and figures from tasks and callbacks to the loggers: the one
place that finds the writers.

Callers pass ``self.loggers`` (a task) or ``trainer.loggers`` (a callback); text, histograms and
figures go to TensorBoard loggers only, scalars to every logger. On DDP ranks other than 0
Lightning's ``experiment`` is a no-op stand-in and ``log_metrics`` does nothing, so callers need
no rank checks.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING

import matplotlib.pyplot as plt
import numpy as np
import torch
from lightning.pytorch.loggers import Logger, TensorBoardLogger
from matplotlib.figure import Figure

from rnnlab.markdown import markdown_table

__all__ = [
    "attention_figure",
    "confusion_figure",
    "forecast_figure",
    "gradient_flow_figure",
    "log_figure",
    "log_histogram",
    "log_scalars",
    "log_text",
    "markdown_table",
    "tensorboard_writers",
]

if TYPE_CHECKING:
    from torch.utils.tensorboard import SummaryWriter


def tensorboard_writers(loggers: Iterable[Logger]) -> list[SummaryWriter]:
    """The ``SummaryWriter`` of every :class:`TensorBoardLogger` in ``loggers`` (others ignored)."""
    return [logger.experiment for logger in loggers if isinstance(logger, TensorBoardLogger)]


def log_scalars(loggers: Iterable[Logger], values: Mapping[str, float], step: int) -> None:
    """``values`` (tag -> number) at ``step`` in every logger (TensorBoard, CSV, ...)."""
    for logger in loggers:
        logger.log_metrics(dict(values), step)


def log_text(loggers: Iterable[Logger], tag: str, text: str, step: int) -> None:
    """Markdown ``text`` under ``tag`` at ``step`` in every TensorBoard logger."""
    for writer in tensorboard_writers(loggers):
        writer.add_text(tag, text, step)


def log_histogram(loggers: Iterable[Logger], tag: str, values: torch.Tensor, step: int) -> None:
    """The distribution of ``values`` (any shape) under ``tag`` at ``step`` in every TensorBoard logger."""
    writers = tensorboard_writers(loggers)
    if writers:
        values = values.detach().float().cpu()
        for writer in writers:
            writer.add_histogram(tag, values, step)


def attention_figure(
    weights: torch.Tensor | np.ndarray, source_tokens: list[str], target_tokens: list[str], title: str = ""
) -> Figure:
    """A heatmap of attention ``weights`` (T_target, T_source), each row summing to 1: source
    tokens along x, target tokens along y, with a colorbar.

    Built on :class:`matplotlib.figure.Figure` with no pyplot, so it holds no global state and
    draws headless or in any thread; nothing needs closing once it is dropped.
    """
    if isinstance(weights, torch.Tensor):
        weights = weights.detach().float().cpu().numpy()
    weights = np.asarray(weights, dtype=np.float32)
    if weights.shape != (len(target_tokens), len(source_tokens)):
        raise ValueError(
            f"attention weights have shape {weights.shape}; expected "
            f"(target tokens, source tokens) = ({len(target_tokens)}, {len(source_tokens)})"
        )
    # About 0.35 inch a token, plus room for the labels and the colorbar.
    figure = Figure(figsize=(2.5 + 0.35 * len(source_tokens), 1.5 + 0.35 * len(target_tokens)), layout="constrained")
    axes = figure.add_subplot()
    # A fixed 0..1 scale, so that colours mean the same weight in every figure and step.
    image = axes.imshow(weights, cmap="viridis", vmin=0.0, vmax=1.0, aspect="auto", interpolation="nearest")
    axes.set_xticks(range(len(source_tokens)), labels=source_tokens, rotation=90)
    axes.set_yticks(range(len(target_tokens)), labels=target_tokens)
    axes.set_xlabel("source")
    axes.set_ylabel("target")
    if title:
        axes.set_title(title)
    figure.colorbar(image, ax=axes)
    return figure


def forecast_figure(history: torch.Tensor, truth: torch.Tensor, forecast: torch.Tensor, names: list[str]) -> Figure:
    """One panel per target column: the history (L,), then the truth and the forecast (H,) after it.

    history (L, K), truth (H, K), forecast (H, K), in original units; ``names`` the K column names.
    """
    steps, horizon = history.shape[0], truth.shape[0]
    past, future = np.arange(-steps + 1, 1), np.arange(1, horizon + 1)
    figure = Figure(figsize=(7.0, 2.5 * len(names)), layout="constrained")
    for k, (axes, name) in enumerate(zip(np.atleast_1d(figure.subplots(len(names), 1, squeeze=False)[:, 0]), names)):
        axes.plot(past, history[:, k].numpy(), color="black", label="history")
        axes.plot(future, truth[:, k].numpy(), color="black", linestyle="--", marker=".", label="truth")
        axes.plot(future, forecast[:, k].numpy(), color="tab:red", marker=".", label="forecast")
        axes.axvline(0.5, color="grey", linewidth=0.5)
        axes.set_ylabel(name)
        axes.legend(loc="upper left", fontsize="small")
    axes.set_xlabel("step (0: the last observation)")
    return figure


def gradient_flow_figure(norms: Mapping[str, np.ndarray], title: str = "") -> Figure:
    """‖∂loss/∂h_t‖ against the position t = 1..T, log scale, one line per direction.

    ``norms``: direction name -> (T,) norms; zeros (no valid sequence at t) are left out.
    """
    figure = Figure(figsize=(7.0, 3.5), layout="constrained")
    axes = figure.add_subplot()
    for name, values in norms.items():
        values = np.asarray(values, dtype=np.float64)
        axes.plot(np.arange(1, len(values) + 1), np.where(values > 0, values, np.nan), marker=".", markersize=3, label=name)
    axes.set_yscale("log")
    axes.set_xlabel("position t in the sequence")
    axes.set_ylabel("‖∂loss/∂h_t‖")
    axes.grid(True, which="both", linewidth=0.3)
    axes.legend(loc="best", fontsize="small")
    if title:
        axes.set_title(title)
    return figure


def confusion_figure(confusion: torch.Tensor | np.ndarray, labels: Sequence[str], f1: Sequence[float], title: str = "") -> Figure:
    """The confusion matrix (C, C) [gold, predicted], each row normalised to the share of its gold
    class, with the counts written in the cells and each gold class's F1 beside its name."""
    if isinstance(confusion, torch.Tensor):
        confusion = confusion.detach().cpu().numpy()
    counts = np.asarray(confusion, dtype=np.int64)
    if counts.shape != (len(labels), len(labels)) or len(f1) != len(labels):
        raise ValueError(f"confusion matrix {counts.shape}, {len(labels)} labels and {len(f1)} F1 values do not match")
    shares = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    size = 2.5 + 0.45 * len(labels)
    figure = Figure(figsize=(size + 1.5, size), layout="constrained")
    axes = figure.add_subplot()
    image = axes.imshow(shares, cmap="Blues", vmin=0.0, vmax=1.0, interpolation="nearest")
    axes.set_xticks(range(len(labels)), labels=labels, rotation=90)
    axes.set_yticks(range(len(labels)), labels=[f"{label} (F1 {score:.2f})" for label, score in zip(labels, f1)])
    axes.set_xlabel("predicted")
    axes.set_ylabel("gold")
    if len(labels) <= 30:  # beyond that the numbers would not be readable
        for (row, column), count in np.ndenumerate(counts):
            colour = "white" if shares[row, column] > 0.5 else "black"
            axes.text(column, row, str(count), ha="center", va="center", fontsize="x-small", color=colour)
    if title:
        axes.set_title(title)
    figure.colorbar(image, ax=axes, label="share of the gold class")
    return figure


def log_figure(loggers: Iterable[Logger], tag: str, figure: Figure, step: int) -> None:
    """``figure`` as an image under ``tag`` at ``step`` in every TensorBoard logger, then closed
    (also when there is no TensorBoard logger, or a writer fails)."""
    try:
        for writer in tensorboard_writers(loggers):
            writer.add_figure(tag, figure, step, close=False)
    finally:
        # What add_figure(close=True) does, done once and also without a writer: releases a pyplot
        # figure from pyplot's registry (a bare Figure is not in it and is freed when dropped).
        plt.close(figure)
