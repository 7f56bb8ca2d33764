"""TensorBoard media helpers: Markdown tables as TensorBoard renders them, text and figures read
back from real event files, other loggers ignored, attention heatmaps, figures closed."""

from __future__ import annotations

import csv as csv_module
import re
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugin_util import markdown_to_safe_html

from rnnlab.tasks.media import (
    attention_figure,
    confusion_figure,
    forecast_figure,
    gradient_flow_figure,
    log_figure,
    log_histogram,
    log_scalars,
    log_text,
    markdown_table,
    tensorboard_writers,
)


def rendered_rows(table: str) -> list[list[str]]:
    """The body cells of a Markdown table as TensorBoard's text plugin renders it."""
    html = markdown_to_safe_html(table)
    body = html.split("<tbody>")[1]
    return [re.findall(r"<td>(.*?)</td>", row, flags=re.S) for row in body.split("</tr>")[:-1]]


def read_events(log_dir: str) -> EventAccumulator:
    events = EventAccumulator(log_dir, size_guidance={"tensors": 0, "images": 0})
    events.Reload()
    return events


# -- markdown_table ------------------------------------------------------------------------------


def test_markdown_table_layout() -> None:
    table = markdown_table(("word", "tag"), [("cat", "NN"), ("runs", "VBZ **✗**")])
    assert table == "| word | tag |\n|---|---|\n| cat | NN |\n| runs | VBZ **✗** |"
    assert rendered_rows(table) == [["cat", "NN"], ["runs", "VBZ <strong>✗</strong>"]]


def test_markdown_table_escapes_what_would_break_the_table() -> None:
    cells = ["a|b", "back\\slash", "ends with \\", "\\|", "two\nlines", "crlf\r\nend"]
    table = markdown_table(("text", "n"), [(cell, str(i)) for i, cell in enumerate(cells)])
    assert len(table.splitlines()) == 2 + len(cells)
    assert rendered_rows(table) == [
        ["a|b", "0"],
        ["back\\slash", "1"],
        ["ends with \\", "2"],
        ["\\|", "3"],
        ["two<br>lines", "4"],
        ["crlf<br>end", "5"],
    ]


def test_markdown_table_without_rows_and_with_a_wrong_row() -> None:
    assert markdown_table(("a", "b"), []) == "| a | b |\n|---|---|"
    with pytest.raises(ValueError, match="3 cells, the header 2"):
        markdown_table(("a", "b"), [("1", "2", "3")])


# -- writers, text and figures -------------------------------------------------------------------


def test_only_tensorboard_loggers_have_writers(tmp_path: Path) -> None:
    tensorboard = TensorBoardLogger(tmp_path, name="tb")
    assert tensorboard_writers([CSVLogger(tmp_path, name="csv"), tensorboard]) == [tensorboard.experiment]
    assert tensorboard_writers([CSVLogger(tmp_path, name="csv")]) == []


def test_text_and_figure_reach_the_event_file(tmp_path: Path) -> None:
    tensorboard = TensorBoardLogger(tmp_path, name="tb")
    loggers = [CSVLogger(tmp_path, name="csv"), tensorboard]
    text = markdown_table(("word", "tag"), [("cat", "NN")])
    log_text(loggers, "val/examples", text, step=7)
    figure = attention_figure(torch.full((2, 3), 1 / 3), ["a", "b", "c"], ["x", "y"], title="step 7")
    log_figure(loggers, "val/attention", figure, step=7)
    tensorboard.experiment.flush()

    events = read_events(tensorboard.log_dir)
    texts = events.Tensors("val/examples/text_summary")
    assert [event.step for event in texts] == [7]
    assert texts[0].tensor_proto.string_val[0].decode() == text
    images = events.Images("val/attention")
    assert [event.step for event in images] == [7]
    assert images[0].width > 0 and images[0].height > 0
    assert not list((tmp_path / "csv").rglob("events.out.tfevents.*"))


def test_log_figure_closes_a_pyplot_figure_even_without_a_writer(tmp_path: Path) -> None:
    for loggers in ([], [CSVLogger(tmp_path, name="csv")], [TensorBoardLogger(tmp_path, name="tb")]):
        figure = plt.figure()
        log_figure(loggers, "figure", figure, step=0)
        assert not plt.fignum_exists(figure.number)


# -- attention_figure ----------------------------------------------------------------------------


def test_attention_figure_labels_and_colorbar() -> None:
    weights = np.array([[0.7, 0.2, 0.1, 0.0], [0.1, 0.1, 0.4, 0.4]])
    source, target = ["h", "e", "l", "o"], ["HH", "OW"]
    open_figures = plt.get_fignums()
    figure = attention_figure(weights, source, target, title="hello")
    assert plt.get_fignums() == open_figures  # not a pyplot figure
    heatmap, colorbar = figure.axes
    assert [label.get_text() for label in heatmap.get_xticklabels()] == source
    assert [label.get_text() for label in heatmap.get_yticklabels()] == target
    assert heatmap.get_title() == "hello"
    assert np.array_equal(heatmap.images[0].get_array(), weights.astype(np.float32))
    assert colorbar.get_label() == "<colorbar>"


def test_attention_figure_checks_the_shape() -> None:
    with pytest.raises(ValueError, match=r"expected \(target tokens, source tokens\) = \(3, 2\)"):
        attention_figure(torch.ones(2, 3) / 3, ["a", "b"], ["x", "y", "z"])


def test_forecast_figure_draws_history_truth_and_forecast_per_target() -> None:
    history, truth, forecast = torch.arange(8.0).view(4, 2), torch.ones(3, 2), torch.zeros(3, 2)
    figure = forecast_figure(history, truth, forecast, ["sales", "price"])
    panels = figure.get_axes()
    assert [axes.get_ylabel() for axes in panels] == ["sales", "price"]
    for k, axes in enumerate(panels):
        lines = {line.get_label(): line for line in axes.get_lines() if not line.get_label().startswith("_")}
        assert set(lines) == {"history", "truth", "forecast"}
        np.testing.assert_array_equal(lines["history"].get_xdata(), [-3, -2, -1, 0])
        np.testing.assert_array_equal(lines["history"].get_ydata(), history[:, k].numpy())
        np.testing.assert_array_equal(lines["forecast"].get_xdata(), [1, 2, 3])


# -- gradient_flow_figure and confusion_figure ---------------------------------------------------


def test_gradient_flow_figure_one_log_line_per_direction_without_zeros() -> None:
    """Positions 1..T along x, a log y axis, one labelled line per direction; zero norms (no valid
    sequence at that position) are left out as NaN, never drawn at 0 on a log axis."""
    forward = np.array([1e-4, 1e-3, 1e-2, 0.0])
    backward = np.array([0.5, 0.25, 0.0, 0.0])
    figure = gradient_flow_figure({"forward": forward, "backward": backward}, title="lstm, step 3")
    (axes,) = figure.axes
    assert axes.get_yscale() == "log"
    assert axes.get_xlabel() == "position t in the sequence" and axes.get_ylabel() == "‖∂loss/∂h_t‖"
    assert axes.get_title() == "lstm, step 3"
    lines = {line.get_label(): line for line in axes.get_lines()}
    assert set(lines) == {"forward", "backward"}
    assert [text.get_text() for text in axes.get_legend().get_texts()] == ["forward", "backward"]
    for name, values in (("forward", forward), ("backward", backward)):
        np.testing.assert_array_equal(lines[name].get_xdata(), [1, 2, 3, 4])
        np.testing.assert_array_equal(lines[name].get_ydata(), np.where(values > 0, values, np.nan))


def test_confusion_figure_normalises_rows_and_writes_counts_and_f1() -> None:
    """Shares per gold row (an empty row stays 0), raw counts written in the cells, F1 beside each gold class."""
    counts = torch.tensor([[8, 2, 0], [1, 3, 0], [0, 0, 0]])
    labels, f1 = ["cat", "dog", "eel"], [0.8421, 0.6667, 0.0]
    figure = confusion_figure(counts, labels, f1, title="val, step 5")
    heatmap, colorbar = figure.axes
    shares = np.asarray(heatmap.images[0].get_array())
    np.testing.assert_allclose(shares, [[0.8, 0.2, 0.0], [0.25, 0.75, 0.0], [0.0, 0.0, 0.0]])
    assert [label.get_text() for label in heatmap.get_xticklabels()] == labels
    assert [label.get_text() for label in heatmap.get_yticklabels()] == ["cat (F1 0.84)", "dog (F1 0.67)", "eel (F1 0.00)"]
    cells = {(round(text.get_position()[1]), round(text.get_position()[0])): text.get_text() for text in heatmap.texts}
    assert cells == {(row, column): str(int(counts[row, column])) for row in range(3) for column in range(3)}
    assert (heatmap.get_xlabel(), heatmap.get_ylabel(), heatmap.get_title()) == ("predicted", "gold", "val, step 5")
    assert colorbar.get_ylabel() == "share of the gold class"


@pytest.mark.parametrize(
    ("counts", "labels", "f1"),
    [
        (np.zeros((2, 3)), ["a", "b"], [0.1, 0.2]),
        (np.zeros((2, 2)), ["a", "b", "c"], [0.1, 0.2, 0.3]),
        (np.zeros((2, 2)), ["a", "b"], [0.1]),
    ],
    ids=["not-square", "labels", "f1"],
)
def test_confusion_figure_checks_the_sizes(counts: np.ndarray, labels: list[str], f1: list[float]) -> None:
    with pytest.raises(ValueError, match="do not match"):
        confusion_figure(counts, labels, f1)


# -- log_scalars and log_histogram ---------------------------------------------------------------


def read_all_events(log_dir: str) -> EventAccumulator:
    """Every scalar, image, histogram and tensor event under ``log_dir``."""
    events = EventAccumulator(log_dir, size_guidance={"scalars": 0, "images": 0, "histograms": 0, "tensors": 0})
    events.Reload()
    return events


def test_log_scalars_reach_tensorboard_and_csv(tmp_path: Path) -> None:
    """Every logger gets the values at the given step: read back from the event file and metrics.csv."""
    tensorboard, csv = TensorBoardLogger(tmp_path, name="tb"), CSVLogger(tmp_path, name="csv")
    log_scalars([tensorboard, csv], {"grad/norm": 2.5, "throughput/train_step_ms": 12.0}, step=4)
    log_scalars([tensorboard, csv], {"grad/norm": 0.75}, step=6)
    tensorboard.experiment.flush()
    csv.save()

    events = read_all_events(tensorboard.log_dir)
    assert [(e.step, e.value) for e in events.Scalars("grad/norm")] == [(4, 2.5), (6, 0.75)]
    assert [(e.step, e.value) for e in events.Scalars("throughput/train_step_ms")] == [(4, 12.0)]
    rows = list(csv_module.DictReader((Path(csv.log_dir) / "metrics.csv").read_text(encoding="utf-8").splitlines()))
    assert [(row["step"], row["grad/norm"], row["throughput/train_step_ms"]) for row in rows] == [
        ("4", "2.5", "12.0"),
        ("6", "0.75", ""),
    ]


def test_log_histogram_reaches_tensorboard_only(tmp_path: Path) -> None:
    """A histogram of the values (any shape, gradients too) in the event file; a CSV logger is skipped."""
    tensorboard, csv = TensorBoardLogger(tmp_path, name="tb"), CSVLogger(tmp_path, name="csv")
    values = torch.arange(12.0, requires_grad=True).view(3, 4)  # a non-leaf that requires grad
    log_histogram([csv, tensorboard], "weights/head.output.weight", values, step=9)
    log_histogram([csv], "csv/only", torch.ones(3), step=9)  # no TensorBoard logger: nothing to do
    tensorboard.experiment.flush()
    csv.save()

    events = read_all_events(tensorboard.log_dir)
    assert events.Tags()["histograms"] == ["weights/head.output.weight"]
    (event,) = events.Histograms("weights/head.output.weight")
    histogram = event.histogram_value
    assert event.step == 9
    assert (histogram.num, histogram.min, histogram.max, histogram.sum) == (12, 0.0, 11.0, 66.0)
    assert histogram.sum_squares == pytest.approx(sum(v * v for v in range(12)))
    assert not list((tmp_path / "csv").rglob("events.out.tfevents.*"))
    assert not (Path(csv.log_dir) / "metrics.csv").exists()
