"""The forecaster end to end through the real commands on a tiny CSV: train (metrics beside the
baselines, forecast figures in TensorBoard) -> predict from a history CSV; user errors."""

from __future__ import annotations

import json
import math
import random
from pathlib import Path
from typing import Any

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from conftest import cli_env, describe, last_line, run_cli, write_lines

PERIOD, LOOKBACK, HORIZON = 12, 24, 3
FORECAST_OVERRIDES = (
    "model=forecaster",
    "model.backbone.hidden_size=16",
    "data.batch_size=16",
    f"data.lookback={LOOKBACK}",
    f"data.horizon={HORIZON}",
    f"data.seasonal_period={PERIOD}",
    "data.value_columns=[demand,temperature]",
    "data.target_columns=[demand]",
    "data.time_column=month",
    "trainer.enable_progress_bar=false",
    "trainer.enable_model_summary=false",
    "seed=0",
)
ENV = cli_env(OMP_NUM_THREADS="1")


def series_rows(count: int, seed: int = 0) -> list[str]:
    """A seasonal demand series with a trend and noise, and a temperature that leads it."""
    rng = random.Random(seed)
    rows = ["month,demand,temperature"]
    for t in range(count):
        season = math.sin(2 * math.pi * t / PERIOD)
        rows.append(f"{t},{100 + 0.5 * t + 20 * season + rng.gauss(0, 2):.3f},{15 + 10 * season:.3f}")
    return rows


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    workdir = tmp_path_factory.mktemp("forecasting_cli")
    data = write_lines(workdir / "demand.csv", series_rows(240))
    run_dir = workdir / "run"
    result = run_cli(
        "train", "data=series_csv", f"data.file={data}", *FORECAST_OVERRIDES, "trainer.max_epochs=8",
        f"hydra.run.dir={run_dir}", cwd=workdir, env=ENV,
    )
    assert result.returncode == 0, describe(result)
    return {"workdir": workdir, "run_dir": run_dir, "result": result}


def test_train_reports_errors_beside_the_baselines(trained: dict[str, Any]) -> None:
    assert last_line(trained["result"].stdout) == str(trained["run_dir"])
    metrics = json.loads((trained["run_dir"] / "metrics.json").read_text())
    assert metrics["status"] == "completed" and metrics["optimized_metric"] == "val/mae"
    for stage in ("val", "test"):
        for name in ("mae", "rmse", "mase", "mae_naive", "mae_seasonal_naive", "skill", "beats_baselines"):
            assert f"{stage}/{name}" in metrics, name
    assert metrics["test/mase"] == pytest.approx(metrics["test/mae"] / metrics["test/mae_seasonal_naive"], rel=1e-4)
    # Errors are in the original units (demand ~100-250), not normalised ones.
    assert metrics["test/mae_naive"] > 1.0


def test_tensorboard_has_forecast_figures_and_baseline_scalars(trained: dict[str, Any]) -> None:
    tags: dict[str, list[str]] = {"scalars": [], "images": []}
    for path in (trained["run_dir"] / "tensorboard").glob("events.out.tfevents.*"):
        events = EventAccumulator(str(path), size_guidance={"images": 0})
        events.Reload()
        for kind in tags:
            tags[kind] += events.Tags()[kind]
    assert {"val/mae", "val/mae_naive", "val/mase", "val/beats_baselines"} <= set(tags["scalars"])
    assert "val/forecast/0" in tags["images"]


def test_predict_forecasts_the_horizon_from_a_history_csv(trained: dict[str, Any]) -> None:
    workdir = trained["workdir"]
    history = write_lines(workdir / "history.csv", series_rows(LOOKBACK + 5, seed=1))
    result = run_cli(
        "predict", f"ckpt_path={trained['run_dir'] / 'checkpoints' / 'best.ckpt'}", f"input_file={history}",
        cwd=workdir, env=ENV,
    )
    assert result.returncode == 0, describe(result)
    records = [json.loads(line) for line in result.stdout.splitlines() if line.strip()]
    assert len(records) == 1
    forecast = records[0]["forecast"]["demand"]
    assert len(forecast) == HORIZON and all(50 < value < 300 for value in forecast)
    short = write_lines(workdir / "short.csv", series_rows(LOOKBACK - 1))
    failed = run_cli("predict", f"ckpt_path={trained['run_dir'] / 'checkpoints' / 'best.ckpt'}", f"input_file={short}", cwd=workdir, env=ENV)
    assert failed.returncode == 2 and "Traceback" not in failed.stderr, describe(failed)


def test_autoregressive_strategy_runs(tmp_path: Path) -> None:
    data = write_lines(tmp_path / "demand.csv", series_rows(120))
    result = run_cli(
        "train", "data=series_csv", f"data.file={data}", *FORECAST_OVERRIDES, "model.strategy=autoregressive",
        "model.decoder.hidden_size=16", "trainer.fast_dev_run=true", cwd=tmp_path, env=ENV,
    )
    assert result.returncode == 0, describe(result)


def test_a_missing_value_is_one_clear_error(tmp_path: Path) -> None:
    rows = series_rows(120)
    rows[7] = "6,,15.0"
    data = write_lines(tmp_path / "gaps.csv", rows)
    result = run_cli("train", "data=series_csv", f"data.file={data}", *FORECAST_OVERRIDES, cwd=tmp_path, env=ENV)
    assert result.returncode == 2, describe(result)
    assert "Traceback" not in result.stderr and "gaps.csv:8" in result.stderr
