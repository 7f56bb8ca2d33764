"""TensorBoard media helpers: Markdown tables as TensorBoard renders them, text and figures read
back from real event files, other loggers ignored, attention heatmaps, figures closed."""

from __future__ import annotations

import re
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugin_util import markdown_to_safe_html

from rnnlab.tasks.media import attention_figure, forecast_figure, log_figure, log_text, markdown_table, tensorboard_writers


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
