"""rnnlab-report: scanning and grouping runs, mean ± std, the Markdown/CSV/LaTeX tables, the plots.

Everything runs on a synthetic tree of run directories (overrides.yaml, metrics.json, small
TensorBoard event files) built once per module; one subprocess test runs the real command.
"""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import matplotlib.image
import numpy as np
import pytest
from conftest import cli_command, cli_env, run_command
from tensorboard.backend.event_processing.event_accumulator import ScalarEvent
from torch.utils.tensorboard import SummaryWriter

from rnnlab.cli.report import main
from rnnlab.errors import UserError
from rnnlab.reports import tables
from rnnlab.reports.plots import epoch_curve, group_band, write_plots
from rnnlab.reports.runs import affects_results, build_report, metric_mode

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
COMMON = ["data=keywords"]
OPTIMIZED = {"optimized_metric": "val/acc", "optimized_mode": "max"}


def completed(**values: float) -> dict[str, object]:
    return {**OPTIMIZED, "status": "completed", "test/padding_ratio": 0.1, **values}


def write_run(run_dir: Path, overrides: list[str], metrics: dict[str, object] | None, curve: list[float] | None = None) -> None:
    """A run directory as rnnlab-train leaves it; ``curve``: val/acc per epoch, logged the way Lightning does."""
    (run_dir / ".hydra").mkdir(parents=True)
    (run_dir / ".hydra/overrides.yaml").write_text("".join(f"- {override}\n" for override in overrides))
    if metrics is not None:
        (run_dir / "metrics.json").write_text(json.dumps(metrics))
    if curve is not None:
        # Lightning's TensorBoardLogger may nest events in version_*/: one run does, to cover it.
        log_dir = run_dir / "tensorboard" / ("version_0" if "seed=2" in overrides else "")
        writer = SummaryWriter(str(log_dir))
        for epoch, value in enumerate(curve):
            step = 10 * (epoch + 1)
            writer.add_scalar("train/loss", 1.0 / step, step - 5)
            writer.add_scalar("epoch", epoch, step - 5)
            writer.add_scalar("val/acc", value, step)
            writer.add_scalar("epoch", epoch, step)
        writer.close()


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two single runs and a third LSTM run with another data.length; a GRU sweep with a run that
    lacks test/acc, a failed run, a diverged one and one killed before it wrote metrics.json."""
    root = tmp_path_factory.mktemp("outputs")
    lstm = [*COMMON, "model/backbone=lstm", "data.length=10"]
    write_run(root / "runs/a", [*lstm, "seed=1"], completed(**{"test/acc": 0.8, "val/acc": 0.85, "test/loss": 0.5}), [0.5, 0.7, 0.85])
    write_run(root / "runs/b", [*lstm, "seed=2", "trainer.enable_progress_bar=false"], completed(**{"test/acc": 0.9, "val/acc": 0.95, "test/loss": 0.3}), [0.6, 0.95])
    write_run(root / "runs/c", [*COMMON, "model/backbone=lstm", "data.length=20", "seed=1"], completed(**{"test/acc": 0.6, "val/acc": 0.65, "test/loss": 0.9}))
    gru = [*COMMON, "model/backbone=gru"]
    sweep = root / "multiruns/sweep"
    write_run(sweep / "0", [*gru, "seed=1"], completed(**{"test/acc": 0.7, "val/acc": 0.75, "test/loss": 0.6}), [0.4, 0.75])
    write_run(sweep / "1", [*gru, "seed=2"], completed(**{"val/acc": 0.8, "test/loss": 0.4}))  # no test/acc
    write_run(sweep / "2", [*gru, "seed=3"], {**OPTIMIZED, "status": "failed", "error": "ValueError: boom\nsecond line"})
    write_run(sweep / "3", [*gru, "seed=4"], {**OPTIMIZED, "status": "diverged", "diverged_at_step": 12, "val/acc": 0.99})
    write_run(sweep / "10", [*gru, "seed=5"], None)
    return root


# =============================================================================================
# Grouping and statistics
# =============================================================================================


def test_runs_that_differ_only_in_seed_form_a_group_with_mean_std_n_and_best(tree: Path) -> None:
    report = build_report(tree)
    assert report.common == COMMON
    assert [group.label for group in report.groups] == ["model/backbone=gru", "model/backbone=lstm data.length=10", "model/backbone=lstm data.length=20"]
    assert report.metrics == ["test/acc", "test/loss", "val/acc"], "test/* then val/*, padding_ratio left out"
    assert report.modes == {"test/acc": "max", "test/loss": "min", "val/acc": "max"}
    gru, lstm, single = report.groups
    assert len(lstm.runs) == 2, "trainer.enable_progress_bar never changes results: not part of the group key"
    stats = report.stats(lstm, "test/acc")
    assert stats is not None and stats.n == 2 and stats.mean == pytest.approx(0.85) and stats.best == 0.9
    assert stats.std == pytest.approx(np.std([0.8, 0.9], ddof=1)), "sample std"
    assert report.stats(single, "test/acc").std is None, "one run: no std"  # type: ignore[union-attr]
    # Only completed runs count: the diverged run's val/acc=0.99 is not in the mean.
    assert len(gru.runs) == 5 and len(gru.counted) == 2
    assert report.stats(gru, "val/acc").values == (0.75, 0.8)  # type: ignore[union-attr]
    assert report.stats(gru, "test/acc").n == 1, "the run without test/acc counts for the other metrics only"  # type: ignore[union-attr]
    assert report.best["test/acc"] == [lstm] and report.best["test/loss"] == [lstm]
    left_out = {row.run: (row.status, row.reason) for row in report.left_out()}
    assert left_out == {
        "multiruns/sweep/2": ("failed", "ValueError: boom second line"),
        "multiruns/sweep/3": ("diverged", "training loss not finite at step 12"),
        "multiruns/sweep/10": ("missing", "no metrics.json (killed, or still running)"),
        "multiruns/sweep/1": ("completed", "no value for test/acc (left out of those columns only)"),
    }


def test_group_by_pools_the_other_overrides_and_says_so(tree: Path) -> None:
    report = build_report(tree, metrics=["test/acc"], group_by=["model/backbone"])
    assert [(group.label, len(group.counted)) for group in report.groups] == [("model/backbone=gru", 2), ("model/backbone=lstm", 3)]
    assert report.pooled == ["data.length"]
    assert report.stats(report.groups[1], "test/acc").mean == pytest.approx((0.8 + 0.9 + 0.6) / 3)  # type: ignore[union-attr]


def test_metric_direction_follows_the_optimized_mode_then_the_name() -> None:
    optimized = {"val/ter": "min", "val/score": "min"}
    assert metric_mode("test/score", optimized) == "min", "the optimized metric's mode, in any split"
    assert [metric_mode(name, {}) for name in ("val/acc", "test/f1_macro", "test/bleu", "test/skill")] == ["max"] * 4
    assert [metric_mode(name, {}) for name in ("val/loss", "test/ter", "test/mae_mean", "val/ppl", "test/rmse", "val/error_rate")] == ["min"] * 6
    assert not affects_results("seed=3") and not affects_results("hydra.launcher.n_jobs=2") and not affects_results("logger=csv")
    assert affects_results("+data.length=5") and affects_results("model/backbone=gru")


def test_user_mistakes_are_one_line_errors(tree: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(UserError, match="unknown metric test/nope; the runs have: test/acc, test/loss"):
        build_report(tree, metrics=["test/nope"])
    with pytest.raises(UserError, match="unknown --group-by key data.lenght"):
        build_report(tree, group_by=["data.lenght"])
    with pytest.raises(SystemExit) as exit_info:
        main([str(tmp_path)])
    error = capsys.readouterr().err
    assert exit_info.value.code == 2 and error.count("\n") == 1 and error.startswith("rnnlab-report: error: ") and "no runs found" in error


# =============================================================================================
# Tables
# =============================================================================================


def test_markdown_csv_and_latex_parse_and_mark_the_best_group(tree: Path, tmp_path: Path) -> None:
    report = build_report(tree)

    text = tables.markdown(report)
    first_table = [line for line in text.split("## Runs left out")[0].splitlines() if line.startswith("|")]
    assert {line.count(" | ") for line in first_table[:1] + first_table[2:]} == {len(tables.header(report)) - 1}
    assert "| model/backbone=lstm data.length=10 | 2 | **0.85 ± 0.07071** | 0.9 |" in text
    assert "| model/backbone=gru | 2 | 0.7 (n=1) | 0.7 |" in text and "Overrides of every run: data=keywords" in text
    assert "| multiruns/sweep/2 | model/backbone=gru | failed | ValueError: boom second line |" in text

    path = tmp_path / "report.csv"
    tables.write_csv(report, path)
    rows = list(csv.DictReader(path.open(newline="")))
    assert [row["group"] for row in rows] == [group.label for group in report.groups]
    lstm = rows[1]
    assert float(lstm["test/acc mean"]) == pytest.approx(0.85) and float(lstm["test/acc std"]) == pytest.approx(0.0707107)
    assert lstm["test/acc n"] == "2" and lstm["test/acc max"] == "0.9" and lstm["test/loss min"] == "0.3"
    assert [row["test/acc best_group"] for row in rows] == ["", "*", ""] and rows[2]["test/acc std"] == ""

    latex = tables.latex(report)
    assert latex.count(r"\begin{tabular}") == latex.count(r"\end{tabular}") == 1
    body = latex[latex.index(r"\toprule") : latex.index(r"\bottomrule")]
    rows_tex = [line for line in body.splitlines() if line.endswith(r"\\")]
    assert len(rows_tex) == 1 + len(report.groups)
    assert {len(re.findall(r"(?<!\\)&", line)) for line in rows_tex} == {len(tables.header(report)) - 1}
    assert r"\textbf{0.85 $\pm$ 0.07071}" in latex and r"test/acc max" in latex
    assert tables.latex_escape("a_b & 50% #1 {x} ~^\\") == r"a\_b \& 50\% \#1 \{x\} \textasciitilde{}\textasciicircum{}\textbackslash{}"


# =============================================================================================
# Plots
# =============================================================================================


def test_epoch_of_a_value_is_the_epoch_logged_with_it() -> None:
    scalars = {
        # step 20: the last training log of epoch 1 and the validation of epoch 0 share the step.
        "epoch": [ScalarEvent(1.0, 10, 0.0), ScalarEvent(2.0, 20, 1.0), ScalarEvent(3.0, 20, 0.0), ScalarEvent(5.0, 40, 1.0)],
        "val/acc": [ScalarEvent(3.0, 20, 0.5), ScalarEvent(5.0, 40, 0.7)],
    }
    assert epoch_curve(scalars, "val/acc") == {0: 0.5, 1: 0.7}
    assert epoch_curve({"val/acc": scalars["val/acc"]}, "val/acc") == {0: 0.5, 1: 0.7}, "no epoch tag: k-th value is epoch k"


def test_group_band_combines_runs_of_different_lengths() -> None:
    band = group_band([{0: 1.0, 1: 2.0}, {0: 3.0}], "minmax")
    assert band is not None
    assert band.x.tolist() == [0, 1] and band.mean.tolist() == [2.0, 2.0] and band.n.tolist() == [2, 1]
    assert band.low.tolist() == [1.0, 2.0] and band.high.tolist() == [3.0, 2.0]
    std = group_band([{0: 1.0, 1: 2.0}, {0: 3.0}], "std")
    assert std is not None and std.high[0] - std.mean[0] == pytest.approx(np.sqrt(2)) and std.high[1] == std.low[1] == 2.0


def test_plots_are_png_files(tree: Path, tmp_path: Path) -> None:
    report = build_report(tree, metrics=["test/acc", "val/acc", "test/loss"])
    written, notes = write_plots(report, tmp_path, band="std")
    assert sorted(path.name for path in written) == ["bar_test_acc.png", "bar_test_loss.png", "bar_val_acc.png", "curves_val_acc.png"]
    assert notes == ["no curve of val/loss: no counted run logged it to TensorBoard"]
    for path in written:
        assert path.read_bytes()[:8] == PNG_MAGIC
        height, width, channels = matplotlib.image.imread(path).shape
        assert height > 100 and width > 100 and channels in (3, 4)


# =============================================================================================
# The command
# =============================================================================================


def test_rnnlab_report_command_prints_markdown_and_writes_every_format_and_plot(tree: Path, tmp_path: Path) -> None:
    out = tmp_path / "report"
    result = run_command(cli_command("report", tree, "--metrics", "test/acc,val/acc", "--out", out, "--plot"), cwd=tmp_path, env=cli_env(OMP_NUM_THREADS="1"))
    assert result.returncode == 0, result.stderr
    assert result.stdout == (out / "report.md").read_text() and result.stdout.startswith(f"# Results: {tree}")
    assert sorted(path.name for path in out.iterdir()) == ["bar_test_acc.png", "bar_val_acc.png", "curves_val_acc.png", "report.csv", "report.md", "report.tex"]
    assert result.stderr.startswith("rnnlab-report: wrote ")


def test_results_md_is_generated_from_the_recipes_of_a_spec(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from rnnlab.reports.results import results_markdown

    sweep = tmp_path / "outputs/results/demo"
    for seed, acc in ((1, 0.8), (2, 0.9)):
        write_run(sweep / str(seed - 1), ["experiment=demo", "model/backbone=gru", f"seed={seed}"], completed(**{"test/acc": acc}))
        git = {"commit": "0123456789abcdef", "dirty": seed == 2}
        (sweep / str(seed - 1) / "run_info.json").write_text(json.dumps({"wall_seconds": 90, "git": git, "hardware": {"processor": "Test CPU", "cpu_count": 2, "cuda_devices": []}}))
    write_run(sweep / "2", ["experiment=demo", "model/backbone=rnn", "seed=1"], completed(**{"test/acc": 0.5}))
    spec = tmp_path / "results.yaml"
    spec.write_text(
        "recipes:\n  - title: Demo task\n    command: rnnlab-train -m experiment=demo\n    sweep_dir: outputs/results/demo\n"
        "    metrics: [test/acc]\n    reference: 'Someone (2020): 0.85'\n"
    )
    monkeypatch.chdir(tmp_path)
    text = results_markdown(Path("results.yaml"))
    assert "## Demo task" in text and "`rnnlab-train -m experiment=demo`" in text and "Reference: Someone (2020): 0.85" in text
    assert "| model/backbone=gru | 2 | **0.85 ± 0.07071** |" in text and "| model/backbone=rnn | 1 | 0.5 |" in text
    assert "Wall time: 3.0 min for 3 runs (Test CPU (2 cores), no GPU). Code: rnnlab commits 0123456, 0123456 + changes." in text

    (tmp_path / "outputs/results/demo").rename(tmp_path / "elsewhere")
    with pytest.raises(UserError, match="run `rnnlab-train -m experiment=demo` first"):
        results_markdown(Path("results.yaml"))
