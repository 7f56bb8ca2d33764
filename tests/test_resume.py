"""Exact resume: a training killed by SIGTERM mid-run saves last.ckpt; `ckpt_path=<run>/checkpoints/last.ckpt`
continues in the same run directory and ends with metrics identical to an uninterrupted run."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

from conftest import CLI_TIMEOUT, cli_command, cli_env, describe, last_line

#: 3 epochs of 60 batches with dropout and a DataLoader worker: every random stream matters.
RUN = (
    "data=keywords",
    "data.num_train=480",
    "data.num_val=32",
    "data.num_test=32",
    "data.batch_size=8",
    "data.num_workers=1",
    "model.backbone.hidden_size=8",
    "model.backbone.embedding_dim=8",
    "model.head_dropout=0.3",
    "trainer.max_epochs=3",
    "trainer.enable_progress_bar=false",
    "trainer.enable_model_summary=false",
    "~callbacks.early_stopping",
)
ENV = cli_env(OMP_NUM_THREADS="1")


def test_a_run_killed_mid_training_resumes_to_identical_metrics(tmp_path: Path) -> None:
    whole_dir, killed_dir = tmp_path / "whole", tmp_path / "killed"
    whole = subprocess.Popen(cli_command("train", *RUN, f"hydra.run.dir={whole_dir}"), cwd=tmp_path, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    killed = subprocess.Popen(cli_command("train", *RUN, f"hydra.run.dir={killed_dir}"), cwd=tmp_path, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + CLI_TIMEOUT
    while not (killed_dir / "checkpoints/last.ckpt").is_file():  # epoch 0 is done: training runs
        assert killed.poll() is None and time.monotonic() < deadline, killed.communicate()
        time.sleep(0.02)
    time.sleep(0.3)
    killed.send_signal(signal.SIGTERM)
    _, killed_err = killed.communicate(timeout=CLI_TIMEOUT)
    assert killed.returncode != 0
    record = json.loads((killed_dir / "metrics.json").read_text())
    assert record["status"] == "failed" and record["error"].startswith("interrupted: SIGTERM: saved"), record
    assert "SIGTERM: saved" in killed_err, killed_err[-3000:]

    resumed = subprocess.run(
        cli_command("train", *RUN, f"ckpt_path={killed_dir}/checkpoints/last.ckpt"), cwd=tmp_path, env=ENV, capture_output=True, text=True, timeout=CLI_TIMEOUT
    )
    assert resumed.returncode == 0, describe(resumed)
    assert Path(tmp_path, last_line(resumed.stdout)).resolve() == killed_dir.resolve(), "resuming continues in the same run directory"
    assert not (tmp_path / "outputs").exists()
    whole_out, whole_err = whole.communicate(timeout=CLI_TIMEOUT)
    assert whole.returncode == 0, whole_err[-3000:]

    expected = json.loads((whole_dir / "metrics.json").read_text())
    got = json.loads((killed_dir / "metrics.json").read_text())
    numbers = {k: v for k, v in expected.items() if isinstance(v, (int, float))}
    assert got["status"] == "completed" and {k: got[k] for k in numbers} == numbers
    assert len(list((killed_dir / "tensorboard").glob("events.*"))) >= 2, "the resumed run appends to the same TensorBoard run"
