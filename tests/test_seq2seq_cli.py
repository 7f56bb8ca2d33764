"""Sequence to sequence end to end through the real commands: train on a tiny tsv_pairs task (short
words -> the word reversed, characters), then eval (beam search) and predict (n-best) from the
checkpoint alone with the training data moved away; the user errors of the seq2seq options; and
one-batch smoke runs of the other seq2seq setups (1 vs N digits_names, attention=none, a GRU
decoder with scheduled teacher forcing).

Every subprocess runs with ``OMP_NUM_THREADS=1``: the models are tiny, and torch's thread pool
fighting other processes for the cores costs far more than it gains (several times slower).
Independent runs (the error cases, the smoke runs) go two at a time.
"""

from __future__ import annotations

import json
import random
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from conftest import CLI_TIMEOUT, cli_command, cli_env, describe, last_line, read_json, run_cli, run_command, write_lines

Run = dict[str, Any]
Pairs = list[tuple[str, str]]

#: The environment of every command here (see the module docstring).
ENV = cli_env(OMP_NUM_THREADS="1")

QUIET = ("trainer.enable_progress_bar=false", "trainer.enable_model_summary=false", "logger=tensorboard")

#: A tiny encoder-decoder: bidirectional LSTM encoder (16 per direction), LSTM decoder of 32.
TINY_SEQ2SEQ = (
    "model=seq2seq",
    "model.backbone.hidden_size=16",
    "model.backbone.embedding_dim=8",
    "model.decoder.hidden_size=32",
    "model.decoder.embedding_dim=8",
    "data.batch_size=16",
    *QUIET,
)

#: The main run: long enough to learn most of the reversal (test/ter about 0.2; untrained > 0.7).
LEARNING_SEQ2SEQ = (*TINY_SEQ2SEQ, "model.head_dropout=0.0", "model.optimizer.lr=0.01", "trainer.max_epochs=8", "seed=0")

LETTERS = "abcdef"


def reversal_pairs(n: int, rng: random.Random) -> Pairs:
    """``n`` (word, word reversed) pairs of 2..5 letters out of a-f."""
    words = ["".join(rng.choice(LETTERS) for _ in range(rng.randint(2, 5))) for _ in range(n)]
    return [(word, word[::-1]) for word in words]


def write_pairs(path: Path, pairs: Pairs) -> Path:
    return write_lines(path, [f"{source}\t{target}" for source, target in pairs])


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def cli(module: str, *args: object, cwd: Path) -> subprocess.CompletedProcess[str]:
    return run_cli(module, *args, cwd=cwd, env=ENV)


def run_concurrently(jobs: dict[str, list[str]], cwd: Path) -> dict[str, subprocess.CompletedProcess[str]]:
    """name -> command, run two at a time."""

    def run(command: list[str]) -> subprocess.CompletedProcess[str]:
        return run_command(command, cwd, ENV, timeout=CLI_TIMEOUT)

    with ThreadPoolExecutor(max_workers=2) as pool:
        return dict(zip(jobs, pool.map(run, jobs.values())))


def assert_one_clear_error(result: subprocess.CompletedProcess[str], command: str, expected: tuple[str, ...]) -> None:
    """Exit code 2, no traceback, and exactly one ``<command>: error: ...`` line, last on stderr."""
    assert result.returncode == 2, describe(result)
    assert "Traceback" not in result.stderr, describe(result)
    error_lines = [line for line in result.stderr.splitlines() if line.startswith(f"{command}: error:")]
    assert len(error_lines) == 1, describe(result)
    assert last_line(result.stderr) == error_lines[0], "the error message must be the last thing on stderr"
    for text in expected:
        assert text in error_lines[0], f"{text!r} not in {error_lines[0]!r}"


# -- the main run: train -> eval -> predict ----------------------------------------------------


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("seq2seq_cli")


@pytest.fixture(scope="module")
def splits() -> dict[str, Pairs]:
    rng = random.Random(0)
    return {split: reversal_pairs(n, rng) for split, n in (("train", 200), ("val", 30), ("test", 30))}


@pytest.fixture(scope="module")
def trained(workdir: Path, splits: dict[str, Pairs]) -> Run:
    """One training run shared by the tests below. Afterwards the train and val files are moved away
    (the test file, in its own folder, stays: eval on the run's own test split reads it) and the
    best checkpoint is copied out of the run directory."""
    train = write_pairs(workdir / "data" / "train.tsv", splits["train"])
    val = write_pairs(workdir / "data" / "val.tsv", splits["val"])
    test = write_pairs(workdir / "heldout" / "test.tsv", splits["test"])
    run_dir = workdir / "run"
    result = cli(
        "train",
        "data=tsv_pairs",
        f"data.train_file={train}",
        f"data.val_file={val}",
        f"data.test_file={test}",
        *LEARNING_SEQ2SEQ,
        f"hydra.run.dir={run_dir}",
        cwd=workdir,
    )
    assert result.returncode == 0, describe(result)
    ckpt = workdir / "model.ckpt"
    shutil.copy2(run_dir / "checkpoints/best.ckpt", ckpt)
    shutil.move(str(workdir / "data"), str(workdir / "data_moved_away"))
    return {"dir": run_dir, "ckpt": ckpt, "stdout": result.stdout, "metrics": read_json(run_dir / "metrics.json")}


def test_train_prints_the_run_dir_last_and_reports_sequence_metrics(trained: Run) -> None:
    assert last_line(trained["stdout"]) == str(trained["dir"])
    metrics = trained["metrics"]
    assert metrics["status"] == "completed"
    assert metrics["optimized_metric"] == "val/ter"
    for name in ("loss", "exact_match", "ter", "bleu"):
        assert f"val/{name}" in metrics and f"test/{name}" in metrics, name
    assert 0.0 <= metrics["test/exact_match"] <= 1.0 and 0.0 <= metrics["test/bleu"] <= 1.0
    # It learned something: an untrained decoder's edit rate is well above 0.7.
    assert metrics["test/ter"] < 0.5, metrics


def test_tensorboard_has_sequence_scalars_example_table_and_attention_heatmaps(trained: Run) -> None:
    events = EventAccumulator(
        str(trained["dir"] / "tensorboard"), size_guidance={"scalars": 0, "images": 0, "tensors": 0}
    )
    events.Reload()
    tags = events.Tags()
    assert {"val/ter", "val/exact_match", "val/bleu", "val/loss", "train/loss", "test/ter"} <= set(tags["scalars"])
    assert len(events.Scalars("val/ter")) == trained["metrics"]["epoch"] + 1
    texts = [tag for tag in tags["tensors"] if tag.startswith("val/examples")]
    assert texts, tags
    table = events.Tensors(texts[0])[-1].tensor_proto.string_val[0].decode()
    assert "| source | reference | prediction |" in table
    heatmaps = [tag for tag in tags["images"] if tag.startswith("val/attention/")]
    assert heatmaps, tags
    assert all(tag.removeprefix("val/attention/").isdigit() for tag in heatmaps), heatmaps
    image = events.Images(heatmaps[0])[-1]
    assert image.encoded_image_string.startswith(b"\x89PNG") and image.width > 0 and image.height > 0


def test_eval_with_beam_search_needs_only_the_checkpoint(trained: Run, workdir: Path, splits: dict[str, Pairs]) -> None:
    assert not (workdir / "data").exists()
    on_split = workdir / "eval_split"
    result = cli("eval", f"ckpt_path={trained['ckpt']}", "search.beam_size=3", f"hydra.run.dir={on_split}", cwd=workdir)
    assert result.returncode == 0, describe(result)
    assert last_line(result.stdout) == str(on_split)
    evaluated = read_json(on_split / "metrics.json")
    assert 0.0 <= evaluated["test/exact_match"] <= 1.0
    assert {"test/ter", "test/bleu"} <= set(evaluated)
    assert evaluated["split"] == "test"
    # The loss is teacher-forced, so the search does not change it.
    assert evaluated["test/loss"] == pytest.approx(trained["metrics"]["test/loss"], abs=1e-5)

    # The same pairs in another file: the same scores.
    elsewhere = write_pairs(workdir / "elsewhere" / "test.tsv", splits["test"])
    on_file = workdir / "eval_file"
    result = cli(
        "eval",
        f"ckpt_path={trained['ckpt']}",
        "search.beam_size=3",
        f"test_file={elsewhere}",
        f"hydra.run.dir={on_file}",
        cwd=workdir,
    )
    assert result.returncode == 0, describe(result)
    from_file = read_json(on_file / "metrics.json")
    assert from_file["test_file"] == str(elsewhere)
    for name in ("test/exact_match", "test/ter", "test/bleu", "test/loss"):
        assert from_file[name] == pytest.approx(evaluated[name], abs=1e-6), name


def test_eval_rejects_a_beam_of_zero(trained: Run, workdir: Path) -> None:
    result = cli(
        "eval", f"ckpt_path={trained['ckpt']}", "search.beam_size=0", f"hydra.run.dir={workdir / 'eval_beam0'}", cwd=workdir
    )
    assert_one_clear_error(result, "rnnlab-eval", ("search.beam_size", ">= 1", "0"))


PREDICT_SOURCES = ["abc", "fed", "cab", "abc", "dddeef"]


def test_predict_writes_the_nbest_hypotheses_of_each_line_in_order(trained: Run, workdir: Path) -> None:
    sources = write_lines(workdir / "sources.txt", PREDICT_SOURCES)
    output = workdir / "predictions" / "out.jsonl"
    result = cli(
        "predict",
        f"ckpt_path={trained['ckpt']}",
        f"input_file={sources}",
        f"output_file={output}",
        "search.beam_size=3",
        "search.nbest=2",
        cwd=workdir,
    )
    assert result.returncode == 0, describe(result)
    assert result.stdout.strip() == "", "with output_file nothing goes to stdout"
    records = read_jsonl(output)
    assert [record["source"] for record in records] == PREDICT_SOURCES
    for record in records:
        assert {"source", "prediction", "nbest"} <= set(record)
        nbest = record["nbest"]
        assert 1 <= len(nbest) <= 2, record
        assert record["prediction"] == nbest[0]["text"]
        for hypothesis in nbest:
            assert isinstance(hypothesis["score"], float) and hypothesis["score"] <= 0.0, hypothesis
            assert "".join(hypothesis["tokens"]) == hypothesis["text"], hypothesis  # char targets
        scores = [hypothesis["score"] for hypothesis in nbest]
        assert scores == sorted(scores, reverse=True), record
    # One source, one answer: the repeated line gets the same hypotheses.
    assert records[0] == records[3]


def test_predict_with_a_beam_of_one_gives_one_greedy_hypothesis(trained: Run, workdir: Path) -> None:
    sources = write_lines(workdir / "sources_greedy.txt", PREDICT_SOURCES)
    result = cli("predict", f"ckpt_path={trained['ckpt']}", f"input_file={sources}", "search.beam_size=1", cwd=workdir)
    assert result.returncode == 0, describe(result)
    records = [json.loads(line) for line in result.stdout.splitlines() if line.strip()]
    assert [record["source"] for record in records] == PREDICT_SOURCES
    for record in records:
        assert len(record["nbest"]) == 1, record
        assert record["prediction"] == record["nbest"][0]["text"]


# -- user errors -------------------------------------------------------------------------------

# name -> (train overrides, substrings the error message must contain). {train} is a good pairs
# file, {no_tab} and {empty_source} bad ones (line 3 is the bad line).
TRAIN_ERRORS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "line_without_tab": (
        ("data=tsv_pairs", "data.train_file={no_tab}"),
        ("no_tab.tsv:3", "source<TAB>target", "no tab"),
    ),
    "empty_source": (("data=tsv_pairs", "data.train_file={empty_source}"), ("empty_source.tsv:3", "empty source")),
    "unknown_attention": (
        ("data=tsv_pairs", "data.train_file={train}", "model.attention=bogus"),
        ("model.attention", "bogus", "none", "dot", "general", "additive"),
    ),
    "dot_attention_size_mismatch": (
        # The decoder (16) cannot be compared with the bidirectional encoder's outputs (2 x 16).
        ("data=tsv_pairs", "data.train_file={train}", "model.attention=dot", "model.decoder.hidden_size=16"),
        ("model.attention=dot", "16", "32"),
    ),
    "tied_embeddings_without_shared_vocab": (
        ("data=tsv_pairs", "data.train_file={train}", "model.tie_embeddings=true"),
        ("model.tie_embeddings=true", "data.shared_vocab=true"),
    ),
    "classification_data": (("data=keywords",), ("Seq2SeqTask needs seq2seq data", "data=tsv_pairs", "classification")),
}


@pytest.fixture(scope="module")
def error_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, subprocess.CompletedProcess[str]]:
    """Every training error case, two at a time (they fail before training starts)."""
    directory = tmp_path_factory.mktemp("seq2seq_errors")
    good = reversal_pairs(20, random.Random(1))
    paths = {
        "train": write_pairs(directory / "train.tsv", good),
        "no_tab": write_lines(directory / "no_tab.tsv", ["ab\tba", "", "abc cba", "cd\tdc"]),
        "empty_source": write_lines(directory / "empty_source.tsv", ["ab\tba", "", " \tdc", "cd\tdc"]),
    }
    jobs = {
        name: cli_command(
            "train",
            *TINY_SEQ2SEQ,
            "trainer.fast_dev_run=true",
            *(arg.format(**paths) for arg in args),  # last: the case's own sizes win
            f"hydra.run.dir={directory / name}",
        )
        for name, (args, _) in TRAIN_ERRORS.items()
    }
    return run_concurrently(jobs, directory)


@pytest.mark.parametrize("case", sorted(TRAIN_ERRORS))
def test_train_user_error_is_one_clear_message(case: str, error_runs: dict[str, subprocess.CompletedProcess[str]]) -> None:
    assert_one_clear_error(error_runs[case], "rnnlab-train", TRAIN_ERRORS[case][1])


# -- other seq2seq setups: one-batch smoke runs --------------------------------------------------

FAST = ("trainer.fast_dev_run=true", *QUIET)
TINY_REVERSE = (
    "data=reverse",
    "data.num_train=64",
    "data.num_val=16",
    "data.num_test=16",
    "data.batch_size=8",
    "model=seq2seq",
    "model.backbone.hidden_size=16",
    "model.backbone.embedding_dim=8",
    "model.decoder.hidden_size=16",
    "model.decoder.embedding_dim=8",
)
#: digits_names as configured, made tiny and cut to one batch per split and epoch (for a checkpoint).
TINY_DIGITS = (
    "experiment=digits_names",
    "model.backbone.hidden_size=16",
    "model.decoder.hidden_size=16",
    "model.decoder.embedding_dim=8",
    "trainer.max_epochs=1",
    "trainer.limit_train_batches=2",
    "trainer.limit_val_batches=1",
    "trainer.limit_test_batches=1",
    *QUIET,
)

SMOKE_RUNS: dict[str, tuple[str, ...]] = {
    # The experiment exactly as configured (MLP encoder, GRU decoder, no attention), one batch.
    "digits_names": ("experiment=digits_names", *FAST),
    "no_attention": (*TINY_REVERSE, "model.attention=none", *FAST),
    "gru_decoder_scheduled_teacher_forcing": (
        *TINY_REVERSE,
        "model/decoder=gru",
        "model.input_feeding=false",
        "model.teacher_forcing.end=0.5",
        "model.teacher_forcing.decay_epochs=2",
        *FAST,
    ),
    # A short real run that writes a checkpoint to predict with.
    "digits_names_checkpoint": TINY_DIGITS,
}


@pytest.fixture(scope="module")
def smoke_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Run]:
    directory = tmp_path_factory.mktemp("seq2seq_smoke")
    jobs = {name: cli_command("train", *args, f"hydra.run.dir={directory / name}") for name, args in SMOKE_RUNS.items()}
    results = run_concurrently(jobs, directory)
    return {name: {"result": results[name], "dir": directory / name, "cwd": directory} for name in SMOKE_RUNS}


@pytest.mark.parametrize("name", sorted(SMOKE_RUNS))
def test_seq2seq_setup_trains_and_tests(name: str, smoke_runs: dict[str, Run]) -> None:
    run = smoke_runs[name]
    assert run["result"].returncode == 0, describe(run["result"])
    assert last_line(run["result"].stdout) == str(run["dir"])
    metrics = read_json(run["dir"] / "metrics.json")
    assert metrics["status"] == "completed"
    assert "test/exact_match" in metrics and "test/ter" in metrics


def test_digits_names_predicts_a_name_for_each_line_of_pixels(smoke_runs: dict[str, Run]) -> None:
    run = smoke_runs["digits_names_checkpoint"]
    assert run["result"].returncode == 0, describe(run["result"])
    rng = random.Random(0)
    lines = [" ".join(str(rng.randint(0, 16)) for _ in range(64)), ",".join(["0"] * 32 + ["16"] * 32)]
    pixels = write_lines(run["cwd"] / "pixels.txt", lines)
    result = cli(
        "predict", f"ckpt_path={run['dir'] / 'checkpoints/best.ckpt'}", f"input_file={pixels}", "search.beam_size=3", cwd=run["cwd"]
    )
    assert result.returncode == 0, describe(result)
    records = [json.loads(line) for line in result.stdout.splitlines() if line.strip()]
    assert len(records) == 2
    for record in records:
        assert isinstance(record["prediction"], str)
        assert record["prediction"] == record["nbest"][0]["text"]
        assert 1 <= len(record["nbest"]) <= 3
