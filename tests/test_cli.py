"""End-to-end tests of the command-line contract (/work/shared/CONTRACT.md): rnnlab-train, -eval, -predict.

Every test here runs the real commands in subprocesses. Trainings are expensive (5-10 s each), so
one module-scoped training is shared by the round-trip, checkpoint, eval, predict and TensorBoard
tests; error cases, which fail before (or right after) a one-batch training, run concurrently.
"""

from __future__ import annotations

import json
import math
import re
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams import metadata as hparams_metadata
from tensorboard.plugins.hparams import plugin_data_pb2

from conftest import (
    FAST_OVERRIDES,
    LABELS,
    LEARNING_OVERRIDES,
    TINY_OVERRIDES,
    cli_command,
    cli_env,
    console_script,
    describe,
    file_digests,
    flipped,
    json_lines,
    last_line,
    read_csv_rows,
    read_json,
    run_cli,
    run_command,
    run_script,
    sentiment_splits,
    text_csv_args,
    write_csv,
    write_jsonl,
    write_lines,
    write_tsv,
)
from rnnlab.cli.malloc import glibc

SEED = 0
#: What the module fixtures return: paths, CompletedProcess, parsed metrics.
Run = dict[str, Any]


# =============================================================================================
# One real training, shared by the round-trip, checkpoint, eval, predict and TensorBoard tests
# =============================================================================================


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("cli")


@pytest.fixture(scope="module")
def data_files(workdir: Path) -> dict[str, Path]:
    """train/val/test csv of the tiny sentiment task, in their own folder (moved away later)."""
    return {split: write_csv(workdir / "data" / f"{split}.csv", rows) for split, rows in sentiment_splits().items()}


def train_sentiment(workdir: Path, data_files: dict[str, Path], run_dir: Path) -> Run:
    """Train the tiny sentiment task with the installed ``rnnlab-train`` console script."""
    result = run_script(
        "rnnlab-train",
        *text_csv_args(data_files["train"], data_files["val"], data_files["test"]),
        *LEARNING_OVERRIDES,
        f"seed={SEED}",
        f"hydra.run.dir={run_dir}",
        cwd=workdir,
    )
    assert result.returncode == 0, describe(result)
    return {"dir": run_dir, "result": result, "metrics": read_json(run_dir / "metrics.json")}


@pytest.fixture(scope="module")
def trained_run(workdir: Path, data_files: dict[str, Path]) -> Run:
    """Train once; shared by the tests below (returns the run dir, output and metrics)."""
    return train_sentiment(workdir, data_files, workdir / "train_run")


def test_same_config_and_seed_give_identical_metrics(workdir: Path, data_files: dict[str, Path], trained_run: Run) -> None:
    """Determinism on CPU: seeded Python/NumPy/torch/DataLoader workers and the bucketed sampler,
    deterministic algorithms on (trainer.deterministic=warn): every metric equal to the last bit."""
    again = train_sentiment(workdir, data_files, workdir / "train_run_again")["metrics"]
    numbers = {k: v for k, v in trained_run["metrics"].items() if isinstance(v, (int, float))}
    assert numbers and {k: again[k] for k in numbers} == numbers


def test_load_run_gives_the_trained_model_config_and_data_in_python(workdir: Path, trained_run: Run) -> None:
    import lightning as L

    import rnnlab

    run = rnnlab.load_run(trained_run["dir"])
    assert run.config.seed == SEED and run.metrics == trained_run["metrics"]
    assert not run.model.training and run.checkpoint.name == "best.ckpt"
    run.datamodule.setup("test")
    # default_root_dir: where the test writes its per-class report (else the current directory).
    trainer = L.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False, default_root_dir=workdir / "notebook")
    results = trainer.test(run.model, datamodule=run.datamodule, verbose=False)[0]
    assert results["test/acc"] == pytest.approx(trained_run["metrics"]["test/acc"], abs=1e-6)


def test_train_run_dir_holds_every_contract_file(trained_run: Run) -> None:
    run_dir: Path = trained_run["dir"]
    for relative in (
        ".hydra/config.yaml",
        ".hydra/overrides.yaml",
        "checkpoints/best.ckpt",
        "checkpoints/last.ckpt",
        "metrics.json",
        "run_info.json",
    ):
        assert (run_dir / relative).is_file(), f"{relative} missing; run dir has {sorted(map(str, run_dir.rglob('*')))}"
    assert list((run_dir / "tensorboard").glob("events.out.tfevents.*")), "no TensorBoard event files"
    overrides = (run_dir / ".hydra/overrides.yaml").read_text()
    assert "model.backbone.hidden_size=16" in overrides
    assert f"seed={SEED}" in overrides


def test_train_prints_run_dir_on_last_line(trained_run: Run) -> None:
    printed = last_line(trained_run["result"].stdout)
    assert Path(printed).resolve() == trained_run["dir"].resolve()


def test_train_metrics_json_is_flat_and_complete(trained_run: Run) -> None:
    metrics = trained_run["metrics"]
    assert metrics["status"] == "completed"
    for stage in ("val", "test"):
        for name in ("acc", "f1_macro", "loss"):
            value = metrics[f"{stage}/{name}"]
            assert isinstance(value, float) and value == value, f"{stage}/{name} = {value!r}"
    for name in ("epoch", "global_step"):
        assert isinstance(metrics[name], int) and not isinstance(metrics[name], bool), f"{name} = {metrics[name]!r}"
    assert metrics["global_step"] > 0
    flat = {key: value for key, value in metrics.items() if isinstance(value, (dict, list))}
    assert not flat, f"metrics.json must be flat; nested values: {flat}"
    for name in ("acc", "f1_macro"):
        assert 0.0 <= metrics[f"test/{name}"] <= 1.0


def test_train_model_learns_the_tiny_task(trained_run: Run) -> None:
    metrics = trained_run["metrics"]
    assert metrics["test/acc"] >= 0.9, metrics
    assert metrics["test/f1_macro"] >= 0.9, metrics


def test_train_run_info_records_provenance(trained_run: Run) -> None:
    info = read_json(trained_run["dir"] / "run_info.json")
    assert info["seed"] == SEED
    assert {"commit", "dirty"} <= set(info["git"])
    assert info["packages"]["torch"] and info["packages"]["lightning"]
    assert info["hardware"]
    assert info["start_time"] <= info["end_time"]
    assert info["freed_memory_kept"] is (glibc() is not None)  # keep_freed_memory=true, the default


def test_train_with_freed_memory_given_back_records_it(workdir: Path, sentiment_files: dict[str, Path]) -> None:
    run_dir = workdir / "freed_memory_given_back"
    result = run_cli(
        "train", *text_csv_args(sentiment_files["train"]), *FAST_OVERRIDES, "keep_freed_memory=false",
        f"hydra.run.dir={run_dir}", cwd=workdir,
    )
    assert result.returncode == 0, describe(result)
    assert read_json(run_dir / "run_info.json")["freed_memory_kept"] is False


def test_checkpoint_holds_vocab_and_labels_as_plain_data(trained_run: Run, data_files: dict[str, Path]) -> None:
    checkpoint = torch.load(trained_run["dir"] / "checkpoints/best.ckpt", map_location="cpu", weights_only=True)
    spec = checkpoint["hyper_parameters"]["data_spec"]
    spec = json.loads(json.dumps(spec))  # survives JSON: plain data only
    assert spec["labels"]["labels"] == list(LABELS)
    assert spec["label_counts"] == [60, 60]
    assert {"good", "great", "bad", "awful"} <= set(spec["input"]["vocab"]["tokens"])

    config = checkpoint["rnnlab"]["config"]
    json.dumps(config)
    assert config["model"]["backbone"]["hidden_size"] == 16
    assert config["model"]["backbone"]["embedding_dim"] == 16
    assert config["data"]["train_file"] == str(data_files["train"])
    assert config["seed"] == SEED
    assert config["trainer"]["max_epochs"] == 6


def test_last_checkpoint_is_the_final_training_state(trained_run: Run) -> None:
    metrics = trained_run["metrics"]
    if metrics.get("best_epoch") == metrics["epoch"]:
        pytest.skip("the best epoch is the last one: last.ckpt and best.ckpt are rightly the same")
    last = torch.load(trained_run["dir"] / "checkpoints/last.ckpt", map_location="cpu", weights_only=True)
    assert last["global_step"] == metrics["global_step"]


# -- TensorBoard -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tensorboard_events(trained_run: Run) -> EventAccumulator:
    accumulator = EventAccumulator(str(trained_run["dir"] / "tensorboard"), size_guidance={"scalars": 0, "images": 0, "tensors": 0})
    accumulator.Reload()
    return accumulator


def test_tensorboard_has_contract_scalars(tensorboard_events: EventAccumulator, trained_run: Run) -> None:
    metrics = trained_run["metrics"]
    tags = set(tensorboard_events.Tags()["scalars"])
    expected = {"train/loss", "train/lr", "train/padding_ratio", "val/acc", "val/f1_macro", "val/loss", "test/acc"}
    assert expected <= tags, f"missing {expected - tags}"

    train_loss = [event.step for event in tensorboard_events.Scalars("train/loss")]
    assert len(train_loss) >= 3
    assert train_loss == sorted(set(train_loss)), "one train/loss point per logged step"
    # log_every_n_steps=10 (trainer default): one point every 10 steps.
    assert len(train_loss) == metrics["global_step"] // 10

    # One val point per epoch; metrics.json reports the epoch where val/acc was best (first of ties).
    val_acc = [event.value for event in tensorboard_events.Scalars("val/acc")]
    val_loss = [event.value for event in tensorboard_events.Scalars("val/loss")]
    assert len(val_acc) == len(val_loss) == metrics["epoch"] + 1  # epoch is 0-based
    best = val_acc.index(max(val_acc))
    assert metrics["val/acc"] == pytest.approx(val_acc[best], abs=1e-6)
    assert metrics["val/loss"] == pytest.approx(val_loss[best], abs=1e-6)

    (test_acc,) = tensorboard_events.Scalars("test/acc")
    assert test_acc.value == pytest.approx(metrics["test/acc"], abs=1e-6)


def test_tensorboard_has_the_default_diagnostics_and_classification_media(tensorboard_events: EventAccumulator, trained_run: Run) -> None:
    """callbacks=default: gradient health and throughput scalars every log_every_n_steps (10) steps;
    the classifier's confusion matrices and per-class report."""
    scalars = set(tensorboard_events.Tags()["scalars"])
    expected = {
        "grad/norm", "grad/norm_clipped", "grad/clipped_fraction", "grad_norm/backbone.embedding", "grad_norm/backbone.rnn.l0",
        "throughput/train_tokens_per_s", "throughput/train_sequences_per_s", "throughput/train_step_ms",
        "throughput/val_tokens_per_s", "throughput/test_tokens_per_s", "resources/peak_rss_mib",
    }
    assert expected <= scalars, f"missing {expected - scalars}"
    assert any(tag.startswith("grad_norm/head.") for tag in scalars)
    # At Lightning's own numbering: the k-th step's numbers at x = k - 1, beside train/loss.
    steps = [event.step for event in tensorboard_events.Scalars("grad/norm")]
    assert steps == list(range(9, trained_run["metrics"]["global_step"], 10))
    assert steps == [event.step for event in tensorboard_events.Scalars("train/loss")]
    assert steps == [event.step for event in tensorboard_events.Scalars("train/lr")]
    for event in tensorboard_events.Scalars("grad/norm_clipped"):  # gradient_clip_val=1.0 (trainer default)
        assert event.value <= 1.0 + 1e-4
    assert all(0.0 <= e.value <= 1.0 for e in tensorboard_events.Scalars("grad/clipped_fraction"))
    assert all(e.value > 0 for e in tensorboard_events.Scalars("throughput/train_tokens_per_s"))
    images = set(tensorboard_events.Tags()["images"])
    assert {"val/confusion_matrix", "test/confusion_matrix"} <= images
    assert len(tensorboard_events.Images("val/confusion_matrix")) == trained_run["metrics"]["epoch"] + 1
    assert "test/per_class/text_summary" in tensorboard_events.Tags()["tensors"]
    report = read_json(trained_run["dir"] / "test_report.json")["classes"]
    assert set(report) == set(LABELS) and sum(row["support"] for row in report.values()) == 60


def test_tensorboard_has_hparams(tensorboard_events: EventAccumulator, trained_run: Run) -> None:
    content = tensorboard_events.PluginTagToContent("hparams")
    assert hparams_metadata.SESSION_START_INFO_TAG in content, f"hparams tags: {sorted(content)}"
    start = plugin_data_pb2.HParamsPluginData.FromString(content[hparams_metadata.SESSION_START_INFO_TAG])
    hparams = start.session_start_info.hparams
    # The keys the command line set, as typed, and the seed; not the whole config.
    assert hparams["model.backbone.hidden_size"].number_value == 16
    assert hparams["data"].string_value == "text_csv"
    assert hparams["seed"].number_value == SEED
    assert "model.backbone.cell" not in hparams and "paths.output_dir" not in hparams
    assert not any(key.startswith(("logger", "hydra")) for key in hparams)
    assert hparams["status"].string_value == "completed"
    # No experiment summary of its own (it would hide other runs' keys); the best epoch's
    # validation metrics as best/val/* scalars, since the dashboard shows a metric's last value.
    assert hparams_metadata.EXPERIMENT_TAG not in content
    (best,) = tensorboard_events.Scalars("best/val/acc")
    assert best.value == pytest.approx(trained_run["metrics"]["val/acc"], abs=1e-6)


# =============================================================================================
# rnnlab-eval and rnnlab-predict on that checkpoint
# =============================================================================================


@pytest.fixture(scope="module")
def default_eval(workdir: Path, trained_run: Run) -> Run:
    """``rnnlab-eval ckpt_path=best.ckpt`` on the run's own test split (needs the training files)."""
    run_dir = workdir / "eval_default"
    before = file_digests(trained_run["dir"])
    best = trained_run["dir"] / "checkpoints/best.ckpt"
    result = run_cli("eval", f"ckpt_path={best}", f"hydra.run.dir={run_dir}", cwd=workdir)
    assert result.returncode == 0, describe(result)
    return {"dir": run_dir, "result": result, "training_run_before": before}


@pytest.fixture(scope="module")
def portable(workdir: Path, trained_run: Run, data_files: dict[str, Path], default_eval: Run) -> Run:
    """The best checkpoint copied elsewhere, with the training data moved away: only the checkpoint is left."""
    directory = workdir / "portable"
    directory.mkdir()
    ckpt = directory / "model.ckpt"
    shutil.copy2(trained_run["dir"] / "checkpoints/best.ckpt", ckpt)
    test_rows = read_csv_rows(data_files["test"])
    shutil.move(str(workdir / "data"), str(workdir / "data_moved_away"))
    assert not data_files["train"].exists()
    return {"dir": directory, "ckpt": ckpt, "test_rows": test_rows}


def test_eval_reproduces_training_test_metrics(default_eval: Run, trained_run: Run) -> None:
    evaluated = read_json(default_eval["dir"] / "metrics.json")
    assert evaluated["test/acc"] == pytest.approx(trained_run["metrics"]["test/acc"], abs=1e-6)
    assert evaluated["test/f1_macro"] == pytest.approx(trained_run["metrics"]["test/f1_macro"], abs=1e-6)
    assert Path(last_line(default_eval["result"].stdout)).resolve() == default_eval["dir"].resolve()


def test_eval_leaves_the_training_run_untouched(default_eval: Run, trained_run: Run) -> None:
    assert file_digests(trained_run["dir"]) == default_eval["training_run_before"]


def test_eval_test_file_needs_only_the_checkpoint(workdir: Path, portable: Run, trained_run: Run) -> None:
    # Every label flipped: exactly the examples the model got right become wrong (2 classes).
    flipped_file = write_csv(portable["dir"] / "flipped.csv", flipped(portable["test_rows"]))
    run_dir = workdir / "eval_flipped"
    result = run_cli(
        "eval",
        f"ckpt_path={portable['ckpt']}",
        f"test_file={flipped_file}",
        f"hydra.run.dir={run_dir}",
        cwd=portable["dir"],
    )
    assert result.returncode == 0, describe(result)
    evaluated = read_json(run_dir / "metrics.json")
    assert evaluated["test/acc"] == pytest.approx(1.0 - trained_run["metrics"]["test/acc"], abs=1e-6)
    assert evaluated["test/acc"] <= 0.1


@pytest.fixture(scope="module")
def predict_stdout(portable: Run) -> Run:
    """``rnnlab-predict`` on a plain text file (the test texts, one per line), printing to stdout."""
    texts = [text for text, _ in portable["test_rows"]]
    input_file = write_lines(portable["dir"] / "inputs.txt", texts)
    result = run_cli("predict", f"ckpt_path={portable['ckpt']}", f"input_file={input_file}", cwd=portable["dir"])
    assert result.returncode == 0, describe(result)
    return {"texts": texts, "records": json_lines(result.stdout), "result": result}


def test_predict_prints_one_json_object_per_input_line_in_order(predict_stdout: Run) -> None:
    records = predict_stdout["records"]
    assert len(records) == len(predict_stdout["texts"])
    assert [record["text"] for record in records] == predict_stdout["texts"]


def test_predict_probs_are_distributions_over_the_label_set(predict_stdout: Run) -> None:
    for record in predict_stdout["records"]:
        assert record["label"] in LABELS
        assert set(record["probs"]) == set(LABELS)
        assert sum(record["probs"].values()) == pytest.approx(1.0, abs=1e-4)
        assert record["label"] == max(record["probs"], key=record["probs"].get)


def test_predict_agrees_with_eval(predict_stdout: Run, portable: Run, trained_run: Run) -> None:
    gold = [label for _, label in portable["test_rows"]]
    predicted = [record["label"] for record in predict_stdout["records"]]
    accuracy = sum(p == g for p, g in zip(predicted, gold)) / len(gold)
    assert accuracy == pytest.approx(trained_run["metrics"]["test/acc"], abs=1e-6)


def test_predict_output_file_from_jsonl_input(portable: Run, predict_stdout: Run) -> None:
    directory = portable["dir"] / "predict_jsonl"
    directory.mkdir()
    records = ({"id": i, "text": text} for i, text in enumerate(predict_stdout["texts"]))
    input_file = write_jsonl(directory / "inputs.jsonl", records)
    output_file = directory / "out" / "predictions.jsonl"
    result = run_cli(
        "predict",
        f"ckpt_path={portable['ckpt']}",
        f"input_file={input_file}",
        f"output_file={output_file}",
        cwd=directory,
    )
    assert result.returncode == 0, describe(result)
    assert result.stdout == ""
    assert json_lines(output_file.read_text(encoding="utf-8")) == predict_stdout["records"]
    # Nothing but output_file is written (no Hydra run dir, no logs).
    written = sorted(str(p.relative_to(directory)) for p in directory.rglob("*") if p.is_file())
    assert written == ["inputs.jsonl", "out/predictions.jsonl"]


# =============================================================================================
# Other reader formats, run directories, sweeps
# =============================================================================================


@pytest.mark.parametrize("fmt", ["jsonl", "tsv"])
def test_train_reads_jsonl_and_tsv_files(tmp_path: Path, fmt: str) -> None:
    splits = sentiment_splits()
    # A token only the last training row has: the vocabulary proves the whole file was read.
    splits["train"][-1] = (splits["train"][-1][0] + ", zebra", splits["train"][-1][1])
    files = {}
    for split, rows in splits.items():
        path = tmp_path / f"{split}.{fmt}"
        if fmt == "jsonl":  # numeric labels: JSON 1 -> "1"
            files[split] = write_jsonl(path, ({"text": t, "label": int(l == "pos")} for t, l in rows))
        else:  # texts with commas: a tsv misread as csv would fail
            files[split] = write_tsv(path, rows)
    run_dir = tmp_path / "run"
    result = run_cli(
        "train",
        *text_csv_args(files["train"], files["val"], files["test"]),
        *TINY_OVERRIDES,
        "trainer.max_epochs=1",
        "trainer.limit_train_batches=2",
        f"hydra.run.dir={run_dir}",
        cwd=tmp_path,
    )
    assert result.returncode == 0, describe(result)
    metrics = read_json(run_dir / "metrics.json")
    assert metrics["status"] == "completed"
    assert "test/acc" in metrics
    checkpoint = torch.load(run_dir / "checkpoints/best.ckpt", map_location="cpu", weights_only=True)
    spec = checkpoint["hyper_parameters"]["data_spec"]
    assert spec["labels"]["labels"] == (["0", "1"] if fmt == "jsonl" else list(LABELS))
    assert spec["label_counts"] == [60, 60]
    assert "zebra" in spec["input"]["vocab"]["tokens"]


@pytest.mark.parametrize("impl", ["auto", "reference"])
def test_train_in_bf16_mixed_precision_on_the_cpu(tmp_path: Path, sentiment_files: dict[str, Path], impl: str) -> None:
    """Lightning's bf16 autocast around every step; the GRU, whose reference cell once mixed its
    bfloat16 gates with a float32 state and failed."""
    run_dir = tmp_path / "run"
    result = run_cli(
        "train",
        *text_csv_args(sentiment_files["train"], sentiment_files["val"], sentiment_files["test"]),
        *TINY_OVERRIDES,
        "model.backbone.cell=gru",
        "model.backbone.bidirectional=true",
        f"model.backbone.impl={impl}",
        "trainer.precision=bf16-mixed",
        "trainer.max_epochs=1",
        f"hydra.run.dir={run_dir}",
        cwd=tmp_path,
    )
    assert result.returncode == 0, describe(result)
    metrics = read_json(run_dir / "metrics.json")
    assert metrics["status"] == "completed"
    assert math.isfinite(metrics["test/loss"])


RUN_DIR_NAME = re.compile(r"^\d{4}-\d{2}-\d{2}_\d{2}-\d{2}-\d{2}_\w+$")


def test_simultaneous_runs_get_distinct_run_dirs(tmp_path: Path, sentiment_files: dict[str, Path]) -> None:
    """Two runs started together in one cwd, no hydra.run.dir: each gets its own outputs/runs/<name>."""
    script = console_script("rnnlab-train")
    args = [str(script), *text_csv_args(sentiment_files["train"]), *FAST_OVERRIDES]
    processes = [
        subprocess.Popen(args, cwd=tmp_path, env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    outputs = [process.communicate(timeout=2 * 240) for process in processes]
    for process, (stdout, stderr) in zip(processes, outputs):
        assert process.returncode == 0, f"exit {process.returncode}\n{stdout}\n{stderr[-4000:]}"

    run_dirs = sorted(path for path in (tmp_path / "outputs" / "runs").iterdir())
    assert len(run_dirs) == 2, run_dirs
    for run_dir in run_dirs:
        assert RUN_DIR_NAME.match(run_dir.name), run_dir.name
        assert read_json(run_dir / "metrics.json")["status"] == "completed"
    printed = sorted(Path(tmp_path, last_line(stdout)).resolve() for stdout, _ in outputs)
    assert printed == [run_dir.resolve() for run_dir in run_dirs]


# =============================================================================================
# User mistakes: exit != 0, one clear message on stderr, no traceback
# =============================================================================================


@pytest.fixture(scope="module")
def bad_files(tmp_path_factory: pytest.TempPathFactory, sentiment_files: dict[str, Path]) -> dict[str, Path]:
    directory = tmp_path_factory.mktemp("bad_files")
    good = read_csv_rows(sentiment_files["train"])[:20]
    files = {
        "empty": directory / "empty.csv",
        "empty_text": write_csv(directory / "empty_text.csv", [*good[:3], ("   ", "neg"), *good[3:]]),
        "missing_label": write_csv(directory / "missing_label.csv", [*good[:5], ("a bad film", ""), *good[5:]]),
        "unseen_label": write_csv(directory / "unseen_label.csv", [*good[:2], ("a so so film", "neutral"), *good[2:]]),
        "latin1": directory / "latin1.csv",
        "blank_line_input": write_lines(directory / "blank_line_input.txt", ["a good film", "", "a bad film"]),
    }
    files["empty"].write_bytes(b"")
    files["latin1"].write_bytes("text,label\ngood movie,pos\ncaf\u00e9 awful,neg\n".encode("latin-1"))
    return files


def train_args(*args: object) -> tuple[object, ...]:
    return ("train", *FAST_OVERRIDES, *args)


# name -> ((command, *args), substrings the error message must contain). Args are formatted with the
# bad_files paths plus {dir} (the cases' cwd), {data} (data=text_csv overrides for a good train file)
# and {ckpt} (the shared training run's best.ckpt).
ERROR_CASES: dict[str, tuple[tuple[object, ...], tuple[str, ...]]] = {
    "unknown_backbone": (train_args("{data}", "model/backbone=transformer"), ("transformer", "rnn", "lstm", "gru")),
    "unknown_data": (train_args("data=nope"), ("nope", "bbc_news", "text_csv")),
    # The batching options shared by the data configs are not a data option of their own.
    "shared_loader_config_is_not_data": (train_args("data=_loader"), ("_loader", "bbc_news", "text_csv")),
    "resume_past_max_epochs": (
        train_args("{data}", "ckpt_path={last}", "trainer.max_epochs=1", "trainer.fast_dev_run=false"),
        ("max_epochs",),
    ),
    "missing_train_file": (
        train_args("data=text_csv", "data.train_file={dir}/no_such.csv"),
        ("no_such.csv", "no such file"),
    ),
    "empty_csv": (train_args("data=text_csv", "data.train_file={empty}"), ("empty.csv", "empty")),
    "empty_text": (train_args("data=text_csv", "data.train_file={empty_text}"), ("empty_text.csv:5", "empty text")),
    "missing_label": (train_args("data=text_csv", "data.train_file={missing_label}"), ("missing_label.csv:7", "label")),
    "unseen_test_label": (
        train_args("{data}", "data.test_file={unseen_label}"),
        ("unseen_label.csv:4", "'neutral'", "never occurs in the training data"),
    ),
    "non_utf8": (train_args("data=text_csv", "data.train_file={latin1}"), ("latin1.csv:3", "UTF-8")),
    "bad_pooling": (
        train_args("{data}", "model.pooling=bogus"),
        ("model.pooling", "bogus", "last", "mean", "max", "attention"),
    ),
    "tagger_on_classification_data": (
        train_args("{data}", "model=tagger"),
        ("SequenceTagger needs tagging data", "data=conll or brown_pos", "classification"),
    ),
    "keep_freed_memory_not_a_bool": (
        train_args("{data}", "keep_freed_memory=sometimes"), ("keep_freed_memory", "true or false", "sometimes")
    ),
    "zero_hidden_size": (train_args("{data}", "model.backbone.hidden_size=0"), ("model.backbone.hidden_size", ">= 1")),
    "eval_missing_checkpoint": (
        ("eval", "ckpt_path={dir}/no_such.ckpt", "hydra.run.dir={dir}/eval_run"),
        ("no_such.ckpt",),
    ),
    "predict_missing_input_file": (("predict", "ckpt_path={ckpt}"), ("input_file",)),
    "predict_blank_input_line": (
        ("predict", "ckpt_path={ckpt}", "input_file={blank_line_input}"),
        ("blank_line_input.txt:2", "empty input"),
    ),
}

#: Hydra reports config-composition errors itself (several lines, no traceback).
HYDRA_COMPOSITION_ERRORS = {"unknown_backbone", "unknown_data", "shared_loader_config_is_not_data"}

def _format(arg: object, paths: dict[str, str]) -> str:
    return str(arg).format(**paths)


@pytest.fixture(scope="module")
def error_runs(
    tmp_path_factory: pytest.TempPathFactory,
    bad_files: dict[str, Path],
    sentiment_files: dict[str, Path],
    trained_run: Run,
) -> dict[str, subprocess.CompletedProcess[str]]:
    """Every error case (plus HYDRA_FULL_ERROR=1 on one of them), run concurrently: they are independent."""
    directory = tmp_path_factory.mktemp("errors")
    paths = {name: str(path) for name, path in bad_files.items()}
    paths["dir"] = str(directory)
    paths["data"] = " ".join(text_csv_args(sentiment_files["train"]))
    paths["ckpt"] = str(trained_run["dir"] / "checkpoints/best.ckpt")
    paths["last"] = str(trained_run["dir"] / "checkpoints/last.ckpt")
    jobs: dict[str, tuple[list[str], dict[str, str]]] = {}
    cases = {k: v[0] for k, v in ERROR_CASES.items()}
    cases["full_error_traceback"] = ERROR_CASES["missing_train_file"][0]
    for name, (module, *args) in cases.items():
        expanded = [part for arg in args for part in _format(arg, paths).split(" ")]
        run_dir = directory / f"run_{name}"
        extra = [f"hydra.run.dir={run_dir}"] if module == "train" else []
        env = cli_env(HYDRA_FULL_ERROR="1") if name == "full_error_traceback" else cli_env()
        jobs[name] = (cli_command(str(module), *expanded, *extra), env)

    def run(job: tuple[list[str], dict[str, str]]) -> subprocess.CompletedProcess[str]:
        command, env = job
        return run_command(command, directory, env, timeout=300)

    with ThreadPoolExecutor(max_workers=3) as pool:
        return dict(zip(jobs, pool.map(run, jobs.values())))


def assert_one_clear_error(result: subprocess.CompletedProcess[str], command: str, expected: tuple[str, ...]) -> None:
    assert result.returncode != 0, describe(result)
    assert "Traceback" not in result.stderr, describe(result)
    error_lines = [line for line in result.stderr.splitlines() if line.startswith(f"{command}: error:")]
    assert len(error_lines) == 1, describe(result)
    assert last_line(result.stderr) == error_lines[0], "the error message must be the last thing on stderr"
    for text in expected:
        assert text in error_lines[0], f"{text!r} not in {error_lines[0]!r}"


@pytest.mark.parametrize("case", sorted(ERROR_CASES))
def test_user_error_is_one_clear_message(case: str, error_runs: dict[str, subprocess.CompletedProcess[str]]) -> None:
    (module, *_), expected = ERROR_CASES[case]
    result = error_runs[case]
    if case in HYDRA_COMPOSITION_ERRORS:
        # Hydra's own message: several lines, but no traceback, and the valid choices listed.
        assert result.returncode != 0, describe(result)
        assert "Traceback" not in result.stderr, describe(result)
        assert "Could not find" in result.stderr
        for text in expected:
            assert text in result.stderr, f"{text!r} not in stderr:\n{result.stderr}"
    else:
        assert_one_clear_error(result, f"rnnlab-{module}", expected)


def test_hydra_full_error_shows_traceback(error_runs: dict[str, subprocess.CompletedProcess[str]]) -> None:
    result = error_runs["full_error_traceback"]
    assert result.returncode != 0
    assert "Traceback" in result.stderr
    assert "UserError" in result.stderr and "no_such.csv" in result.stderr


def test_failed_run_records_failure_in_its_metrics(error_runs: dict[str, subprocess.CompletedProcess[str]]) -> None:
    run_dir = Path(error_runs["unseen_test_label"].args[-1].removeprefix("hydra.run.dir="))
    metrics = read_json(run_dir / "metrics.json")
    assert metrics["status"] == "failed"
    assert "neutral" in metrics["error"]


def test_failed_run_leaves_earlier_run_intact(
    workdir: Path, trained_run: Run, bad_files: dict[str, Path], sentiment_files: dict[str, Path]
) -> None:
    """A run resuming from the earlier run's checkpoint, with a bad test file, fails before training
    (the test split is checked up front) and changes none of the earlier run's files."""
    before = file_digests(trained_run["dir"])
    failed_dir = workdir / "failed_run"
    result = run_cli(
        "train",
        *text_csv_args(sentiment_files["train"], sentiment_files["val"], bad_files["unseen_label"]),
        *TINY_OVERRIDES,
        "trainer.max_epochs=20",
        f"ckpt_path={trained_run['dir'] / 'checkpoints/last.ckpt'}",
        f"hydra.run.dir={failed_dir}",
        cwd=workdir,
    )
    assert_one_clear_error(result, "rnnlab-train", ("never occurs in the training data",))
    assert not (failed_dir / "checkpoints").exists(), "the bad test file must be reported before training"
    assert file_digests(trained_run["dir"]) == before


def test_finished_run_dir_is_never_reused(workdir: Path, trained_run: Run, sentiment_files: dict[str, Path]) -> None:
    """hydra.run.dir pointing at a completed run is refused before Hydra rewrites its .hydra/."""
    before = file_digests(trained_run["dir"])
    result = run_cli(
        "train",
        *text_csv_args(sentiment_files["train"]),
        *FAST_OVERRIDES,
        f"hydra.run.dir={trained_run['dir']}",
        cwd=workdir,
    )
    assert_one_clear_error(result, "rnnlab-train", (str(trained_run["dir"]), "hydra.run.dir"))
    assert file_digests(trained_run["dir"]) == before
