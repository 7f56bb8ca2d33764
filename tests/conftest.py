"""Shared helpers for the command-line tests: tiny data files and running the console scripts.

The CLI tests start real subprocesses (``python -m rnnlab.<command>`` or the installed console
script), so everything here is about keeping them small: a tiny model, a tiny learnable dataset,
and run directories under pytest's tmp dirs (never the repository's ``outputs/``).
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import random
import subprocess
import sys
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

# -- overrides -------------------------------------------------------------------------------

#: A tiny model and quiet trainer: every CLI training in the tests uses these.
TINY_OVERRIDES: tuple[str, ...] = (
    "model.backbone.hidden_size=16",
    "model.backbone.embedding_dim=16",
    "data.batch_size=8",
    "trainer.enable_progress_bar=false",
    "trainer.enable_model_summary=false",
    "logger=tensorboard",
)

#: A real (short) training that reliably reaches test/acc >= 0.9 on :func:`sentiment_examples`.
LEARNING_OVERRIDES: tuple[str, ...] = (*TINY_OVERRIDES, "trainer.max_epochs=6", "model.optimizer.lr=0.01")

#: One batch of fit and test, no checkpoints or loggers: for checks that only need the run to start.
FAST_OVERRIDES: tuple[str, ...] = (*TINY_OVERRIDES, "trainer.fast_dev_run=true")

#: Seconds one CLI subprocess may take (the machine may be busy with other test runs).
CLI_TIMEOUT = 240

# -- tiny data -------------------------------------------------------------------------------

LABELS = ("neg", "pos")
KEYWORDS = {"pos": ("good", "great"), "neg": ("bad", "awful")}
FILLER = "the a movie film plot actor story scene was is it this and very quite really".split()


def sentiment_examples(n: int, rng: random.Random) -> list[tuple[str, str]]:
    """``n`` (text, label) pairs, labels alternating pos/neg: 2..15 filler words plus one keyword
    ("good"/"great" -> pos, "bad"/"awful" -> neg) at a random position."""
    rows = []
    for i in range(n):
        label = ("pos", "neg")[i % 2]
        words = [rng.choice(FILLER) for _ in range(rng.randint(2, 15))]
        words.insert(rng.randint(0, len(words)), rng.choice(KEYWORDS[label]))
        rows.append((" ".join(words), label))
    return rows


def sentiment_splits(
    train: int = 120, val: int = 40, test: int = 60, seed: int = 0
) -> dict[str, list[tuple[str, str]]]:
    """Train, val and test examples drawn in that order from one ``random.Random(seed)``."""
    rng = random.Random(seed)
    return {split: sentiment_examples(n, rng) for split, n in (("train", train), ("val", val), ("test", test))}


def flipped(rows: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    """The same texts with the other label (binary pos/neg)."""
    other = {"pos": "neg", "neg": "pos"}
    return [(text, other[label]) for text, label in rows]


def write_csv(
    path: Path, rows: Iterable[Sequence[object]], header: Sequence[str] = ("text", "label"), delimiter: str = ","
) -> Path:
    """A csv (or, with ``delimiter="\\t"``, tsv) file with a header row."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, delimiter=delimiter, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)
    return path


def write_tsv(path: Path, rows: Iterable[Sequence[object]], header: Sequence[str] = ("text", "label")) -> Path:
    return write_csv(path, rows, header, delimiter="\t")


def write_jsonl(path: Path, records: Iterable[dict[str, object]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(record) + "\n" for record in records), encoding="utf-8")
    return path


def write_lines(path: Path, lines: Iterable[str]) -> Path:
    """Raw prediction input: one text per line."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")
    return path


def read_csv_rows(path: Path) -> list[tuple[str, str]]:
    with open(path, newline="", encoding="utf-8") as handle:
        return [(row["text"], row["label"]) for row in csv.DictReader(handle)]


def text_csv_args(train: Path, val: Path | None = None, test: Path | None = None) -> list[str]:
    """``data=text_csv`` overrides for the given files."""
    args = ["data=text_csv", f"data.train_file={train}"]
    if val is not None:
        args.append(f"data.val_file={val}")
    if test is not None:
        args.append(f"data.test_file={test}")
    return args


@pytest.fixture(scope="module")
def one_torch_thread() -> Iterator[None]:
    """torch on one thread for a test module (``pytestmark = pytest.mark.usefixtures("one_torch_thread")``):
    tiny models train many times faster on one thread than on contended ones."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def sentiment_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """train.csv (120 rows), val.csv (40), test.csv (60) of the tiny sentiment task, in a module tmp dir."""
    directory = tmp_path_factory.mktemp("sentiment")
    return {split: write_csv(directory / f"{split}.csv", rows) for split, rows in sentiment_splits().items()}


# -- tiny tagging data (CoNLL) ---------------------------------------------------------------

FIRST_NAMES = ("John", "Mary", "Ahmed", "Li", "Olga")
SURNAMES = ("Smith", "Khan", "Wang", "Petrova")
CITIES = ("Paris", "London", "Lagos", "Lima", "New York")
FILLER_WORDS = "the a met in from visited and saw then today with lives works".split()


def ner_sentence(rng: random.Random) -> list[tuple[str, str]]:
    """2..9 filler words around a person (first name, optional surname: B-PER I-PER) and/or a
    city (B-LOC, "New York" B-LOC I-LOC): the entity words alone decide the tags."""
    units = [[(rng.choice(FILLER_WORDS), "O")] for _ in range(rng.randint(2, 9))]
    if rng.random() < 0.8:
        person = [(rng.choice(FIRST_NAMES), "B-PER")]
        if rng.random() < 0.5:
            person.append((rng.choice(SURNAMES), "I-PER"))
        units.insert(rng.randint(0, len(units)), person)
    if rng.random() < 0.6:
        city = rng.choice(CITIES).split()
        units.insert(rng.randint(0, len(units)), [(word, "B-LOC" if i == 0 else "I-LOC") for i, word in enumerate(city)])
    return [token for unit in units for token in unit]


def ner_splits(train: int = 150, val: int = 40, test: int = 60, seed: int = 0) -> dict[str, list[list[tuple[str, str]]]]:
    rng = random.Random(seed)
    return {split: [ner_sentence(rng) for _ in range(n)] for split, n in (("train", train), ("val", val), ("test", test))}


def write_conll(path: Path, sentences: Iterable[Sequence[tuple[str, str]]], docstart: bool = True) -> Path:
    """A CoNLL-2003-style file: token, a POS-like dummy column, tag; blank line between sentences."""
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = ["-DOCSTART- -X- O", ""] if docstart else []
    for sentence in sentences:
        lines += [f"{token} X {tag}" for token, tag in sentence] + [""]
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def ner_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """train.conll (150 sentences), val.conll (40), test.conll (60) of the tiny NER task."""
    directory = tmp_path_factory.mktemp("ner")
    return {split: write_conll(directory / f"{split}.conll", rows) for split, rows in ner_splits().items()}


CONF_DIR = str(Path(__file__).resolve().parents[1] / "conf")


def compose_config(*overrides: str) -> DictConfig:
    """conf/train.yaml with overrides. Only data / model / trainer are used, so the
    ``${hydra:runtime.output_dir}`` in ``paths`` is never resolved."""
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        return compose(config_name="train", overrides=list(overrides))


@pytest.fixture(scope="module")
def data_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[str]]:
    """Hydra overrides naming small files for the data configs that read them (conll, text_lm)."""
    directory = tmp_path_factory.mktemp("data_files")
    splits = ner_splits(train=40, val=16, test=8)
    conll = {split: write_conll(directory / f"{split}.conll", rows) for split, rows in splits.items()}
    text = write_lines(directory / "corpus.txt", [f"the {i % 7} cat sat on mat {i % 5}" for i in range(200)])
    return {
        "conll": [f"data.train_file={conll['train']}", f"data.val_file={conll['val']}"],
        "text_lm": [f"data.train_file={text}"],
    }


# -- running the commands --------------------------------------------------------------------


def console_script(name: str) -> Path:
    """The installed console script ``name`` (e.g. ``rnnlab-train``) next to this interpreter."""
    path = Path(sys.executable).parent / name
    assert path.is_file(), f"console script {name} is not installed next to {sys.executable}"
    return path


def cli_env(**extra: str) -> dict[str, str]:
    """The environment for a CLI subprocess: ours, minus anything that changes error reporting."""
    env = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}
    env.update(extra)
    return env


def cli_command(module: str, *args: object) -> list[str]:
    """``python -m rnnlab.<module> args...``; ``module`` may be given as ``rnnlab.train`` or ``train``."""
    module = module if module.startswith("rnnlab.") else f"rnnlab.{module}"
    return [sys.executable, "-m", module, *map(str, args)]


def run_command(
    command: list[str], cwd: Path, env: dict[str, str] | None = None, timeout: float = CLI_TIMEOUT
) -> subprocess.CompletedProcess[str]:
    """Run ``command`` in ``cwd`` with the CLI test environment; never raises on a non-zero exit."""
    return subprocess.run(
        command, cwd=cwd, env=env if env is not None else cli_env(), capture_output=True, text=True, timeout=timeout
    )


def run_cli(
    module: str,
    *args: object,
    cwd: Path,
    env: dict[str, str] | None = None,
    timeout: float = CLI_TIMEOUT,
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m rnnlab.<module> args...`` in ``cwd``."""
    return run_command(cli_command(module, *args), cwd, env, timeout)


def run_script(
    name: str,
    *args: object,
    cwd: Path,
    env: dict[str, str] | None = None,
    timeout: float = CLI_TIMEOUT,
) -> subprocess.CompletedProcess[str]:
    """Run the installed console script ``name`` (e.g. ``rnnlab-train``)."""
    return run_command([str(console_script(name)), *map(str, args)], cwd, env, timeout)


def read_json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8"))


def json_lines(text: str) -> list[dict[str, Any]]:
    """One JSON object per non-empty line (rnnlab-predict's output)."""
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def describe(result: subprocess.CompletedProcess[str]) -> str:
    """A failed command, for assertion messages."""
    return f"exit {result.returncode}\n--- stdout ---\n{result.stdout[-3000:]}\n--- stderr ---\n{result.stderr[-5000:]}"


def last_line(text: str) -> str:
    lines = [line for line in text.splitlines() if line.strip()]
    return lines[-1].strip() if lines else ""


def file_digests(directory: Path) -> dict[str, str]:
    """sha256 of every file under ``directory`` (relative path -> hex digest)."""
    return {
        str(path.relative_to(directory)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(directory.rglob("*"))
        if path.is_file()
    }
