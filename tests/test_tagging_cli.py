"""The tagger end to end through the real commands: train (CRF + character features) -> eval -> predict
on a tiny CoNLL task, with the training data moved away before eval and predict."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from conftest import TINY_OVERRIDES, describe, ner_splits, read_json, run_cli, write_conll, write_lines

Run = dict[str, Any]
TAGGER_OVERRIDES = (
    *TINY_OVERRIDES,
    "model=tagger",
    "model.decoder=crf",
    "model/char_encoder=lstm",
    "model.char_encoder.hidden_size=8",
    "model.char_encoder.embedding_dim=8",
    "model.head_dropout=0.0",
    "model.optimizer.lr=0.02",
    "trainer.max_epochs=6",
    "seed=0",
)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("tagging_cli")


@pytest.fixture(scope="module")
def splits() -> dict[str, list[list[tuple[str, str]]]]:
    return ner_splits()


@pytest.fixture(scope="module")
def trained(workdir: Path, splits: dict[str, list[list[tuple[str, str]]]]) -> Run:
    files = {split: write_conll(workdir / "data" / f"{split}.conll", rows) for split, rows in splits.items()}
    run_dir = workdir / "run"
    result = run_cli(
        "train",
        "data=conll",
        f"data.train_file={files['train']}",
        f"data.val_file={files['val']}",
        f"data.test_file={files['test']}",
        *TAGGER_OVERRIDES,
        f"hydra.run.dir={run_dir}",
        cwd=workdir,
    )
    assert result.returncode == 0, describe(result)
    ckpt = workdir / "model.ckpt"
    shutil.copy2(run_dir / "checkpoints/best.ckpt", ckpt)
    shutil.move(str(workdir / "data"), str(workdir / "data_moved_away"))
    return {"dir": run_dir, "ckpt": ckpt, "metrics": read_json(run_dir / "metrics.json")}


def test_train_reports_token_accuracy_and_span_f1(trained: Run) -> None:
    metrics = trained["metrics"]
    assert metrics["status"] == "completed"
    assert metrics["optimized_metric"] == "val/f1"
    for name in ("loss", "acc", "f1", "precision", "recall"):
        assert f"val/{name}" in metrics and f"test/{name}" in metrics, name
    assert metrics["test/acc"] >= 0.95 and metrics["test/f1"] >= 0.9, metrics


def test_test_report_lists_every_tag_and_span_type(trained: Run) -> None:
    report = read_json(trained["dir"] / "test_report.json")
    assert set(report["tags"]) == {"B-LOC", "B-PER", "I-LOC", "I-PER", "O"}
    assert set(report["spans"]) == {"LOC", "PER", "micro"}
    assert report["spans"]["micro"]["f1"] == pytest.approx(trained["metrics"]["test/f1"], abs=1e-6)
    assert report["scheme"] == "IOB2"
    text = (trained["dir"] / "test_report.txt").read_text()
    assert "B-PER" in text and "span (IOB2)" in text


def test_tensorboard_has_per_epoch_f1_accuracy_and_example_sentences(trained: Run) -> None:
    events = EventAccumulator(str(trained["dir"] / "tensorboard"), size_guidance={"scalars": 0, "tensors": 0})
    events.Reload()
    scalars = set(events.Tags()["scalars"])
    assert {"val/f1", "val/acc", "train/acc", "train/f1", "test/f1"} <= scalars
    assert len(events.Scalars("val/f1")) == trained["metrics"]["epoch"] + 1
    texts = [tag for tag in events.Tags()["tensors"] if tag.startswith("val/examples")]
    assert texts, events.Tags()
    sample = events.Tensors(texts[0])[-1].tensor_proto.string_val[0].decode()
    assert "| word (vocabulary) | gold | predicted |" in sample


def test_eval_on_a_test_file_needs_only_the_checkpoint(trained: Run, workdir: Path, splits: Run) -> None:
    test_file = write_conll(workdir / "elsewhere" / "test.conll", splits["test"])
    run_dir = workdir / "eval"
    result = run_cli("eval", f"ckpt_path={trained['ckpt']}", f"test_file={test_file}", f"hydra.run.dir={run_dir}", cwd=workdir)
    assert result.returncode == 0, describe(result)
    evaluated = read_json(run_dir / "metrics.json")
    assert evaluated["test/f1"] == pytest.approx(trained["metrics"]["test/f1"], abs=1e-6)
    assert (run_dir / "test_report.json").is_file()


def test_predict_tags_each_token_of_each_line(trained: Run, workdir: Path) -> None:
    lines = ["John Smith visited Paris today", "the a", "Mary lives in New York"]
    result = run_cli("predict", f"ckpt_path={trained['ckpt']}", f"input_file={write_lines(workdir / 'in.txt', lines)}", cwd=workdir)
    assert result.returncode == 0, describe(result)
    records = [json.loads(line) for line in result.stdout.splitlines() if line.strip()]
    assert [record["tokens"] for record in records] == [line.split() for line in lines]
    assert records[0]["tags"] == ["B-PER", "I-PER", "O", "B-LOC", "O"]
    assert records[2]["tags"] == ["B-PER", "O", "O", "B-LOC", "I-LOC"]


def test_brown_pos_without_the_corpus_names_the_fetch_command(tmp_path: Path) -> None:
    result = run_cli("train", "data=brown_pos", "model=tagger", f"data.corpus_dir={tmp_path / 'nowhere'}", cwd=tmp_path)
    assert result.returncode == 2, describe(result)
    assert "scripts/fetch_data.py brown" in result.stderr
    assert "Traceback" not in result.stderr
