"""data=japanese_vowels: official splits, the speaker-stratified validation carve, standardisation
fitted on the training part, spec round trips, prediction files, and the real SequenceClassifier on
real-valued variable-length inputs: padding invariance for every cell and pooling, and learning."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import lightning as L
import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from omegaconf import DictConfig

from rnnlab.data import JapaneseVowelsDataModule, load_japanese_vowels
from rnnlab.data.japanese_vowels import NUM_COEFFICIENTS, Utterance
from rnnlab.errors import UserError
from rnnlab.tasks import SequenceClassifier

CONF_DIR = str(Path(__file__).resolve().parents[1] / "conf")
SPEAKERS = [str(i) for i in range(1, 10)]
TEST_COUNTS = {"1": 31, "2": 35, "3": 88, "4": 44, "5": 29, "6": 24, "7": 40, "8": 50, "9": 29}
# 30 training utterances per speaker; val_fraction 0.15 holds out round(4.5) = 4 of each.
VAL_PER_SPEAKER = 4
SPLIT_SIZES = {"train": 270 - 9 * VAL_PER_SPEAKER, "val": 9 * VAL_PER_SPEAKER, "test": 370}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def official() -> dict[str, list[Utterance]]:
    return {split: load_japanese_vowels(split) for split in ("train", "test")}


@pytest.fixture(autouse=True)
def loads(monkeypatch: pytest.MonkeyPatch, official: dict[str, list[Utterance]]) -> list[str]:
    """Serve the utterances already loaded (sktime's loader takes ~0.5 s a split); returns the
    list of splits the module asked for."""
    asked: list[str] = []

    def load(split: str) -> list[Utterance]:
        asked.append(split)
        return list(official[split])

    monkeypatch.setattr("rnnlab.data.japanese_vowels.load_japanese_vowels", load)
    return asked


def compose_config(*overrides: str) -> DictConfig:
    """conf/train.yaml with data=japanese_vowels model=classifier and ``overrides``."""
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        return compose(config_name="train", overrides=["data=japanese_vowels", "model=classifier", *overrides])


@pytest.fixture(scope="module")
def datamodule(official: dict[str, list[Utterance]]) -> JapaneseVowelsDataModule:
    """Built from conf/data/japanese_vowels.yaml, every split set up."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("rnnlab.data.japanese_vowels.load_japanese_vowels", lambda split: list(official[split]))
        module = instantiate(compose_config("seed=7").data)
        module.setup()
    return module


def raw_frames(utterances: list[Utterance]) -> torch.Tensor:
    """Every frame of ``utterances`` stacked, in float64: (sum T_i, 12)."""
    return torch.cat([utterance.frames for utterance in utterances]).double()


# -- the dataset and its splits ----------------------------------------------------------------


def test_official_splits_are_unpadded_sequences_of_12_coefficients(official: dict[str, list[Utterance]]) -> None:
    assert {split: len(utterances) for split, utterances in official.items()} == {"train": 270, "test": 370}
    assert Counter(u.speaker for u in official["train"]) == {speaker: 30 for speaker in SPEAKERS}
    assert Counter(u.speaker for u in official["test"]) == TEST_COUNTS
    lengths = [len(u.frames) for utterances in official.values() for u in utterances]
    assert (min(lengths), max(lengths)) == (7, 29)
    for utterance in official["train"] + official["test"]:
        assert utterance.frames.dtype == torch.float32
        assert utterance.frames.shape[1] == NUM_COEFFICIENTS
        # No NaN padding: every frame is a real frame.
        assert torch.isfinite(utterance.frames).all(), utterance.source


def test_val_is_carved_from_train_stratified_by_speaker(
    loads: list[str], official: dict[str, list[Utterance]]
) -> None:
    module = JapaneseVowelsDataModule()
    splits = {split: module.read_split(split) for split in ("train", "val", "test")}
    assert {split: len(utterances) for split, utterances in splits.items()} == SPLIT_SIZES
    assert Counter(u.speaker for u in splits["val"]) == {speaker: VAL_PER_SPEAKER for speaker in SPEAKERS}
    sources = {split: [u.source for u in utterances] for split, utterances in splits.items()}
    # No utterance in two splits; train and val together are the official training set.
    assert not set(sources["train"]) & set(sources["val"])
    assert sorted(sources["train"] + sources["val"]) == sorted(u.source for u in official["train"])
    assert sources["test"] == [u.source for u in official["test"]]
    assert loads.count("train") == 1  # carved once for both parts


def test_the_carve_follows_split_seed_only() -> None:
    def val_sources(**options: Any) -> list[str]:
        return [u.source for u in JapaneseVowelsDataModule(**options).read_split("val")]

    assert val_sources(split_seed=3) == val_sources(split_seed=3, seed=99)
    assert val_sources(split_seed=3) != val_sources(split_seed=4)


@pytest.mark.parametrize("value", [-0.1, 1.0])
def test_val_fraction_out_of_range_is_a_user_error(value: float) -> None:
    with pytest.raises(UserError, match="data.val_fraction"):
        JapaneseVowelsDataModule(val_fraction=value)


def test_empty_val_split_is_a_user_error_naming_the_option() -> None:
    with pytest.raises(UserError, match=r"val split is empty .*data.val_fraction=0.0"):
        JapaneseVowelsDataModule(val_fraction=0.0).setup("fit")


def test_test_file_is_a_user_error() -> None:
    module = JapaneseVowelsDataModule(test_file="mine.txt")
    with pytest.raises(UserError, match="takes no test_file"):
        module.setup("test")


# -- encoding, standardisation and the spec ----------------------------------------------------


def test_config_builds_the_module_and_its_spec(datamodule: JapaneseVowelsDataModule) -> None:
    assert isinstance(datamodule, JapaneseVowelsDataModule)
    assert (datamodule.batch_size, datamodule.seed, datamodule.normalize) == (16, 7, True)
    assert {split: len(examples) for split, examples in datamodule.datasets.items()} == SPLIT_SIZES
    spec = datamodule.spec
    assert spec["task"] == "classification"
    assert spec["input"]["kind"] == "features"
    assert spec["input"]["num_features"] == NUM_COEFFICIENTS
    assert spec["labels"] == {"labels": SPEAKERS}
    assert spec["label_counts"] == [30 - VAL_PER_SPEAKER] * 9
    for split, examples in datamodule.datasets.items():
        utterances = datamodule.read_split(split)
        for index, (example, utterance) in enumerate(zip(examples, utterances, strict=True)):
            assert example["index"] == index
            assert example["inputs"].dtype == torch.float32
            assert example["inputs"].shape == utterance.frames.shape
            assert SPEAKERS[example["target"]] == utterance.speaker


def test_standardisation_is_fitted_on_the_training_part_only(datamodule: JapaneseVowelsDataModule) -> None:
    scaler = datamodule.spec["input"]["scaler"]
    train = raw_frames(datamodule.read_split("train"))
    torch.testing.assert_close(torch.tensor(scaler["mean"], dtype=torch.float64), train.mean(dim=0))
    torch.testing.assert_close(torch.tensor(scaler["std"], dtype=torch.float64), train.std(dim=0, correction=0))
    # The whole official training set (validation included) has other statistics.
    everything = raw_frames(datamodule.read_split("train") + datamodule.read_split("val"))
    assert not torch.allclose(everything.mean(dim=0), train.mean(dim=0), atol=1e-4, rtol=0)
    # Encoded training frames are standardised; held-out ones only approximately.
    encoded = torch.cat([example["inputs"] for example in datamodule.datasets["train"]]).double()
    zeros = torch.zeros(NUM_COEFFICIENTS, dtype=torch.float64)
    torch.testing.assert_close(encoded.mean(dim=0), zeros, atol=1e-5, rtol=0)
    torch.testing.assert_close(encoded.std(dim=0, correction=0), zeros + 1)


@pytest.mark.parametrize("split", ["train", "val", "test"])
def test_standardisation_round_trips_to_the_raw_frames(datamodule: JapaneseVowelsDataModule, split: str) -> None:
    scaler = datamodule.spec["input"]["scaler"]
    mean, std = torch.tensor(scaler["mean"]), torch.tensor(scaler["std"])
    for example, utterance in zip(datamodule.datasets[split], datamodule.read_split(split), strict=True):
        torch.testing.assert_close(example["inputs"] * std + mean, utterance.frames, atol=1e-5, rtol=1e-5)


def test_without_normalize_the_inputs_are_the_raw_frames() -> None:
    module = JapaneseVowelsDataModule(normalize=False)
    module.setup("fit")
    assert module.spec["input"]["scaler"] is None
    for example, utterance in zip(module.datasets["val"], module.read_split("val"), strict=True):
        assert torch.equal(example["inputs"], utterance.frames)


@pytest.mark.parametrize("normalize", [True, False])
def test_spec_round_trips_and_nothing_is_refitted(loads: list[str], tmp_path: Path, normalize: bool) -> None:
    fitted = JapaneseVowelsDataModule(normalize=normalize)
    fitted.setup()
    spec = json.loads(json.dumps(fitted.spec))
    assert spec == fitted.spec
    loads.clear()
    # The spec's labels and scaler win over the options: another carve and normalize change nothing.
    rebuilt = JapaneseVowelsDataModule(spec=spec, val_fraction=0.5, split_seed=9, normalize=not normalize)
    rebuilt.setup("test")
    assert loads == ["test"]  # the training set is never read
    assert set(rebuilt.datasets) == {"test"}
    assert rebuilt.spec == fitted.spec
    for a, b in zip(rebuilt.datasets["test"], fitted.datasets["test"], strict=True):
        assert torch.equal(a["inputs"], b["inputs"])
        assert (a["target"], a["index"]) == (b["target"], b["index"])
    path = write_utterances(tmp_path / "input.txt", fitted.read_split("test")[:3])
    assert rebuilt.load_predict_file(str(path)) == fitted.load_predict_file(str(path))
    for a, b in zip(rebuilt.datasets["predict"], fitted.datasets["predict"], strict=True):
        assert torch.equal(a["inputs"], b["inputs"])


def test_spec_before_setup_is_an_error() -> None:
    with pytest.raises(RuntimeError, match="setup"):
        JapaneseVowelsDataModule().spec  # noqa: B018


# -- prediction files --------------------------------------------------------------------------


def format_utterance(frames: torch.Tensor, separator: str = " ") -> str:
    """(T, 12) -> one line: frames joined by "; ", coefficients by ``separator`` (repr: exact floats)."""
    return "; ".join(separator.join(repr(float(value)) for value in frame) for frame in frames)


def write_utterances(path: Path, utterances: list[Utterance]) -> Path:
    lines = [format_utterance(u.frames, " " if i % 2 else ",") for i, u in enumerate(utterances)]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_load_predict_file_encodes_each_line_with_the_scaler(
    datamodule: JapaneseVowelsDataModule, tmp_path: Path
) -> None:
    utterances = [datamodule.read_split("test")[i] for i in (5, 0, 200, 17)]
    path = write_utterances(tmp_path / "input.txt", utterances)
    assert datamodule.load_predict_file(str(path)) == [{"frames": len(u.frames)} for u in utterances]
    predict = datamodule.datasets["predict"]
    assert all("target" not in example for example in predict)
    for example, utterance in zip(predict, utterances, strict=True):
        assert torch.equal(example["inputs"], datamodule.standardize(utterance.frames))
    # The predict loader sorts by length; "index" restores the file order.
    seen = {}
    for batch in datamodule.predict_dataloader():
        assert batch.targets is None
        for row, index in enumerate(batch.extras["index"].tolist()):
            seen[index] = batch.inputs[row, : batch.lengths[row]]
    assert sorted(seen) == [0, 1, 2, 3]
    for index, example in enumerate(predict):
        assert torch.equal(seen[index], example["inputs"])


GOOD_FRAME = " ".join(["0.5"] * NUM_COEFFICIENTS)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        (f"{GOOD_FRAME}; {' '.join(['0.5'] * 11)}", "frame 2 has 11 values; expected 12"),
        (f"{GOOD_FRAME};", "frame 2 has 0 values"),
        (GOOD_FRAME.replace("0.5", "x", 1), "frame 1 holds a value that is not a number"),
        (GOOD_FRAME.replace("0.5", "nan", 1), "finite"),
        ("   ", "empty input"),
    ],
    ids=["short-frame", "trailing-separator", "not-a-number", "nan", "blank"],
)
def test_load_predict_file_errors_name_path_and_line(
    datamodule: JapaneseVowelsDataModule, tmp_path: Path, line: str, message: str
) -> None:
    path = tmp_path / "input.txt"
    path.write_text(f"{GOOD_FRAME}; {GOOD_FRAME}\n{line}\n")
    with pytest.raises(UserError, match=message) as info:
        datamodule.load_predict_file(str(path))
    assert str(info.value).startswith(f"{path}:2: ")


# -- the classifier on real-valued variable-length inputs ---------------------------------------


def classifier(spec: dict[str, Any], *overrides: str) -> SequenceClassifier:
    model = instantiate(compose_config(*overrides).model, data_spec=spec)
    assert isinstance(model, SequenceClassifier)
    return model


@pytest.mark.parametrize("impl", ["fused", "reference"])
@pytest.mark.parametrize("pooling", ["last", "mean", "max", "attention"])
@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_padding_does_not_change_any_example_s_logits(
    datamodule: JapaneseVowelsDataModule, cell: str, bidirectional: bool, pooling: str, impl: str
) -> None:
    """Padding invariance for variable-length real-valued classification: the logits of each
    example in a padded batch equal its logits alone, whatever the padding holds."""
    torch.manual_seed(0)
    model = classifier(
        datamodule.spec,
        f"model/backbone={cell}",
        f"model.backbone.bidirectional={bidirectional}",
        f"model.backbone.impl={impl}",
        "model.backbone.hidden_size=16",
        f"model.pooling={pooling}",
    ).eval()
    assert model.backbone.embedding is None  # features go straight into the recurrent network
    test = datamodule.datasets["test"]
    by_length = {len(example["inputs"]): example for example in test}
    examples = [by_length[length] for length in (13, 7, 29, 20, 9, 11)]
    batch = datamodule.collator()(examples)
    assert batch.inputs.shape == (6, 29, NUM_COEFFICIENTS) and not batch.mask.all()
    noisy = torch.where(batch.mask.unsqueeze(-1), batch.inputs, 1e3 * torch.randn_like(batch.inputs))
    with torch.no_grad():
        padded = model(batch.inputs, batch.lengths, batch.mask)
        noise_padded = model(noisy, batch.lengths, batch.mask)
        for row, example in enumerate(examples):
            alone = datamodule.collator()([example])
            assert alone.mask.all()
            logits = model(alone.inputs, alone.lengths, alone.mask)[0]
            torch.testing.assert_close(padded[row], logits, atol=1e-5, rtol=1e-5)
            torch.testing.assert_close(noise_padded[row], logits, atol=1e-5, rtol=1e-5)


def test_a_small_lstm_learns_the_speakers(datamodule: JapaneseVowelsDataModule, tmp_path: Path) -> None:
    cfg = compose_config(
        "model/backbone=lstm",
        "model.backbone.hidden_size=32",
        "model.backbone.bidirectional=false",
        "model.pooling=mean",
        "model.optimizer.lr=0.01",
        "trainer=cpu",
        "trainer.max_epochs=8",
        "trainer.enable_progress_bar=false",
        "trainer.enable_model_summary=false",
        "trainer.num_sanity_val_steps=0",
    )
    L.seed_everything(0)
    model = instantiate(cfg.model, data_spec=datamodule.spec)
    # default_root_dir: where the test writes its per-class report.
    trainer = instantiate(cfg.trainer, logger=False, enable_checkpointing=False, default_root_dir=tmp_path)
    trainer.fit(model, datamodule=datamodule)
    (results,) = trainer.test(model, datamodule=datamodule, verbose=False)
    assert results["test/acc"] >= 0.8, results  # chance is 1/9; the most frequent speaker alone scores 0.24
