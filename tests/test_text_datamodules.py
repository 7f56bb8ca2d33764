"""Text classification data modules: user files, carved splits, vocab, dataloaders, BBC News, keywords."""

from __future__ import annotations

import csv
import json
import random
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from torch.utils.data import RandomSampler

from rnnlab.batch import Batch
from rnnlab.data import BBCNewsDataModule, KeywordsDataModule, TextFileDataModule, load_bbc_news
from rnnlab.data.readers import TextExample
from rnnlab.data.sampler import BucketBatchSampler
from rnnlab.errors import UserError
from rnnlab.masking import lengths_to_mask

CONF_DIR = str(Path(__file__).resolve().parents[1] / "conf")
FILLERS = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta"]
# 100 rows: 40 / 30 / 30 per label.
LABEL_COUNTS = {"pos": 40, "neg": 30, "neutral": 30}


def write_csv(path: Path, rows: list[tuple[str, str]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as file:
        writer = csv.writer(file)
        writer.writerow(["text", "label"])
        writer.writerows(rows)
    return path


def labelled_rows(seed: int = 0) -> list[tuple[str, str]]:
    """Each row holds a few shared filler words and one token unique to it: ``u<row>``."""
    rng = random.Random(seed)
    labels = [label for label, count in LABEL_COUNTS.items() for _ in range(count)]
    rng.shuffle(labels)
    rows = []
    for i, label in enumerate(labels):
        words = [rng.choice(FILLERS) for _ in range(rng.randint(1, 8))]
        rows.append((" ".join([*words, f"u{i}"]), label))
    return rows


@pytest.fixture
def train_csv(tmp_path: Path) -> Path:
    return write_csv(tmp_path / "train.csv", labelled_rows())


@pytest.fixture
def test_csv(tmp_path: Path) -> Path:
    rows = [("alpha beta u3", "pos"), ("never seen words", "neg"), ("Gamma, DELTA! u7 zeta", "neutral"), ("u1", "neg")]
    return write_csv(tmp_path / "test.csv", rows)


def row_line(example: TextExample) -> int:
    """The 1-based file line of an example; the header is line 1, row i is line i + 2."""
    return int(example.source.rsplit(":", 1)[1])


def carved(module: TextFileDataModule) -> dict[str, list[TextExample]]:
    return {split: module.read_split(split) for split in ("train", "val", "test")}


def unique_tokens(examples: list[TextExample]) -> set[str]:
    return {word for example in examples for word in example.text.split() if word.startswith("u")}


# -- TextFileDataModule: carved splits ---------------------------------------------------------


def test_carved_splits_are_stratified_disjoint_and_cover_all_rows(train_csv: Path) -> None:
    module = TextFileDataModule(str(train_csv), val_fraction=0.1, test_fraction=0.2, split_seed=3)
    splits = carved(module)
    lines = {split: [row_line(e) for e in examples] for split, examples in splits.items()}
    # Disjoint and together every row exactly once.
    everything = lines["train"] + lines["val"] + lines["test"]
    assert sorted(everything) == list(range(2, 102))
    # Label-stratified: each label is cut by the fractions.
    for split, fraction in (("val", 0.1), ("test", 0.2)):
        counts = Counter(e.label for e in splits[split])
        assert counts == {label: round(fraction * n) for label, n in LABEL_COUNTS.items()}, split
    assert Counter(e.label for e in splits["train"]) == {"pos": 28, "neg": 21, "neutral": 21}
    # Each split keeps the file order.
    for split_lines in lines.values():
        assert split_lines == sorted(split_lines)


def test_carved_splits_are_deterministic_under_split_seed(train_csv: Path) -> None:
    def val_lines(split_seed: int, seed: int = 0) -> list[int]:
        module = TextFileDataModule(str(train_csv), split_seed=split_seed, seed=seed)
        return [row_line(e) for e in module.read_split("val")]

    assert val_lines(5) == val_lines(5)
    assert val_lines(5) == val_lines(5, seed=123)  # the training seed does not move the split
    assert val_lines(5) != val_lines(6)


def test_vocabulary_is_fitted_on_the_train_split_only(train_csv: Path) -> None:
    module = TextFileDataModule(str(train_csv), val_fraction=0.1, test_fraction=0.2)
    module.setup()
    splits = carved(module)
    vocab = module.vocab
    assert unique_tokens(splits["train"]) <= set(vocab.tokens)
    for split in ("val", "test"):
        held_out = unique_tokens(splits[split])
        assert held_out and not held_out & set(vocab.tokens), split
    # A token seen only in the test split is encoded as <unk>: the last token of every test row is its u<i>.
    for encoded in module.datasets["test"]:
        assert encoded["inputs"][-1].item() == vocab.unk_id
    for encoded in module.datasets["train"]:
        assert encoded["inputs"][-1].item() != vocab.unk_id
    # Label counts come from the train split.
    assert module.spec["label_counts"] == [21, 21, 28]  # neg, neutral, pos (sorted labels)
    assert module.spec["labels"]["labels"] == ["neg", "neutral", "pos"]


def test_encoding_matches_the_vocabulary(train_csv: Path) -> None:
    module = TextFileDataModule(str(train_csv))
    module.setup("fit")
    for split in ("train", "val"):
        examples = module.read_split(split)
        assert len(module.datasets[split]) == len(examples)
        for index, (example, encoded) in enumerate(zip(examples, module.datasets[split], strict=True)):
            assert encoded["index"] == index
            assert module.vocab.decode(encoded["inputs"].tolist()) == [
                t if t in module.vocab else "<unk>" for t in example.text.lower().split()
            ]
            assert module.labels.decode(encoded["target"]) == example.label


def test_spec_round_trips_through_json_and_needs_no_train_file(
    train_csv: Path, test_csv: Path, tmp_path: Path
) -> None:
    fitted = TextFileDataModule(str(train_csv), test_file=str(test_csv), max_length=4, min_freq=1)
    fitted.setup()
    spec = json.loads(json.dumps(fitted.spec))
    assert spec == fitted.spec

    missing = tmp_path / "no" / "such" / "train.csv"
    # The spec's tokenizer settings win over the constructor's.
    rebuilt = TextFileDataModule(
        str(missing), test_file=str(test_csv), spec=spec, tokenizer="char", lowercase=False, max_length=None
    )
    rebuilt.setup("test")
    assert set(rebuilt.datasets) == {"test"}
    assert rebuilt.spec == fitted.spec
    assert rebuilt.pad_id == fitted.pad_id
    assert len(rebuilt.datasets["test"]) == 4
    for a, b in zip(rebuilt.datasets["test"], fitted.datasets["test"], strict=True):
        assert torch.equal(a["inputs"], b["inputs"])
        assert a["target"] == b["target"]
        assert a["index"] == b["index"]

    predict = tmp_path / "predict.txt"
    predict.write_text("Alpha beta gamma delta u5\nsomething new\n")
    assert rebuilt.load_predict_file(str(predict)) == fitted.load_predict_file(str(predict))
    for a, b in zip(rebuilt.datasets["predict"], fitted.datasets["predict"], strict=True):
        assert torch.equal(a["inputs"], b["inputs"])

    # Reading the training data with that module is impossible: it really never touched the file.
    with pytest.raises(UserError, match="no such file"):
        rebuilt.setup("fit")


def test_max_length_truncates_inputs_and_the_vocabulary(tmp_path: Path) -> None:
    rows = [(f"a b c late{i}", label) for i, label in enumerate(["x", "y"] * 10)]
    path = write_csv(tmp_path / "train.csv", rows)
    full = TextFileDataModule(str(path), val_fraction=0.1, test_fraction=0.1)
    short = TextFileDataModule(str(path), val_fraction=0.1, test_fraction=0.1, max_length=3)
    full.setup()
    short.setup()
    for split in ("train", "val", "test"):
        for a, b in zip(full.datasets[split], short.datasets[split], strict=True):
            assert len(b["inputs"]) == 3
            assert len(a["inputs"]) == 4
            assert full.vocab.decode(a["inputs"][:3].tolist()) == short.vocab.decode(b["inputs"].tolist())
    assert any(token.startswith("late") for token in full.vocab.tokens)
    assert not any(token.startswith("late") for token in short.vocab.tokens)
    assert short.spec["input"]["max_length"] == 3


def test_max_length_must_be_positive(train_csv: Path) -> None:
    with pytest.raises(UserError, match="data.max_length"):
        TextFileDataModule(str(train_csv), max_length=0)


@pytest.mark.parametrize("name", ["val_fraction", "test_fraction"])
@pytest.mark.parametrize("value", [-0.1, 1.0])
def test_fractions_out_of_range_are_user_errors(train_csv: Path, name: str, value: float) -> None:
    with pytest.raises(UserError, match=f"data.{name}"):
        TextFileDataModule(str(train_csv), **{name: value})


def test_test_file_replaces_the_test_split(train_csv: Path, test_csv: Path) -> None:
    module = TextFileDataModule(str(train_csv), test_file=str(test_csv), val_fraction=0.1, test_fraction=0.5)
    module.setup()
    train, val = module.read_split("train"), module.read_split("val")
    # test_fraction is ignored: train and val share all 100 rows of the train file.
    assert sorted(row_line(e) for e in train + val) == list(range(2, 102))
    assert len(val) == 10
    assert len(module.datasets["test"]) == 4
    test_texts = ["alpha beta u3", "never seen words", "Gamma, DELTA! u7 zeta", "u1"]
    for encoded, text in zip(module.datasets["test"], test_texts, strict=True):
        assert encoded["inputs"].tolist() == module.vocab.encode(module.tokenize(text))
    # "never seen words" -> three <unk>
    assert module.datasets["test"][1]["inputs"].tolist() == [module.vocab.unk_id] * 3


def test_val_file_replaces_the_val_split(train_csv: Path, test_csv: Path) -> None:
    module = TextFileDataModule(str(train_csv), val_file=str(test_csv), val_fraction=0.5, test_fraction=0.1)
    module.setup("fit")
    assert len(module.datasets["val"]) == 4
    assert len(module.datasets["train"]) == 90


def test_unseen_test_label_is_a_user_error_naming_file_line_and_label(train_csv: Path, tmp_path: Path) -> None:
    bad = write_csv(tmp_path / "bad_test.csv", [("alpha", "pos"), ("beta", "neg"), ("gamma", "angry")])
    module = TextFileDataModule(str(train_csv), test_file=str(bad))
    module.setup("fit")
    with pytest.raises(UserError) as info:
        module.setup("test")
    message = str(info.value)
    assert f"{bad}:4" in message
    assert "'angry'" in message


def test_empty_carved_split_is_a_user_error_naming_the_options(tmp_path: Path) -> None:
    tiny = write_csv(tmp_path / "tiny.csv", [("a b", "x"), ("c d", "x"), ("e f", "y"), ("g h", "y")])
    module = TextFileDataModule(str(tiny), val_fraction=0.1, test_fraction=0.5)
    with pytest.raises(UserError) as info:
        module.setup("fit")
    message = str(info.value)
    assert "val" in message
    assert "data.val_fraction" in message
    assert "data.val_file" in message
    assert str(tiny) in message


def test_empty_test_split_is_a_user_error_naming_the_options(tmp_path: Path) -> None:
    tiny = write_csv(tmp_path / "tiny.csv", [("a b", "x"), ("c d", "x"), ("e f", "y"), ("g h", "y")])
    module = TextFileDataModule(str(tiny), val_fraction=0.5, test_fraction=0.1)
    with pytest.raises(UserError) as info:
        module.setup()
    assert "data.test_fraction" in str(info.value)
    assert "data.test_file" in str(info.value)


def test_spec_before_setup_is_an_error(train_csv: Path) -> None:
    with pytest.raises(RuntimeError, match="setup"):
        TextFileDataModule(str(train_csv)).spec  # noqa: B018


def test_load_predict_file_txt_keeps_order(train_csv: Path, tmp_path: Path) -> None:
    module = TextFileDataModule(str(train_csv))
    module.setup("fit")
    texts = ["zeta u1", "alpha beta gamma delta epsilon", "beta", "Gamma gamma", "nothing known here at all"]
    path = tmp_path / "input.txt"
    path.write_text("\n".join(texts) + "\n")
    assert module.load_predict_file(str(path)) == [{"text": text} for text in texts]
    assert_predictions_in_order(module, texts)


def test_load_predict_file_jsonl_keeps_order_and_ignores_labels(train_csv: Path, tmp_path: Path) -> None:
    module = TextFileDataModule(str(train_csv))
    module.setup("fit")
    records = [{"text": "zeta u1", "label": "pos"}, {"text": "alpha beta gamma"}, {"text": "beta", "label": "unseen"}]
    path = tmp_path / "input.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    texts = [r["text"] for r in records]
    assert module.load_predict_file(str(path)) == [{"text": text} for text in texts]
    assert all("target" not in example for example in module.datasets["predict"])
    assert_predictions_in_order(module, texts)


def assert_predictions_in_order(module: TextFileDataModule, texts: list[str]) -> None:
    """The predict loader may reorder (sorted by length); ``index`` restores the input order."""
    by_index: dict[int, list[int]] = {}
    for batch in module.predict_dataloader():
        assert batch.targets is None
        for row, index in enumerate(batch.extras["index"].tolist()):
            by_index[index] = batch.inputs[row, : batch.lengths[row]].tolist()
    assert sorted(by_index) == list(range(len(texts)))
    for index, text in enumerate(texts):
        assert by_index[index] == module.vocab.encode(module.tokenize(text))


# -- dataloaders -------------------------------------------------------------------------------


def realistic_rows(count: int = 1500, seed: int = 0) -> list[tuple[str, str]]:
    """Log-normal lengths (median ~33 words, long tail), like reviews or news snippets."""
    rng = random.Random(seed)
    rows = []
    for i in range(count):
        length = max(1, min(300, round(rng.lognormvariate(3.5, 0.7))))
        rows.append((" ".join(rng.choice(FILLERS) for _ in range(length)), ["a", "b", "c"][i % 3]))
    return rows


@pytest.fixture(scope="module")
def realistic_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_csv(tmp_path_factory.mktemp("realistic") / "train.csv", realistic_rows())


def epoch_padding_ratio(loader: Any) -> float:
    padded = total = 0
    for batch in loader:
        padded += int((~batch.mask).sum())
        total += batch.mask.numel()
    return padded / total


def assert_consistent_batch(batch: Any, pad_id: int) -> None:
    assert isinstance(batch, Batch)
    size, steps = batch.inputs.shape
    assert batch.inputs.dtype == torch.long
    assert batch.lengths.shape == (size,) and batch.mask.shape == (size, steps)
    assert int(batch.lengths.min()) >= 1
    assert int(batch.lengths.max()) == steps
    assert torch.equal(batch.mask, lengths_to_mask(batch.lengths, steps))
    assert torch.all(batch.inputs[~batch.mask] == pad_id)
    assert torch.all(batch.inputs[batch.mask] != pad_id)
    assert batch.targets is not None and batch.targets.shape == (size,)
    assert batch.extras["index"].shape == (size,)


def test_train_loader_is_bucketed_by_default_and_plain_without_bucketing(realistic_csv: Path) -> None:
    bucketed = TextFileDataModule(str(realistic_csv), batch_size=16)
    plain = TextFileDataModule(str(realistic_csv), batch_size=16, bucketing=False)
    bucketed.setup("fit")
    plain.setup("fit")
    loader = bucketed.train_dataloader()
    assert isinstance(loader.batch_sampler, BucketBatchSampler)
    assert loader.batch_sampler.shuffle
    plain_loader = plain.train_dataloader()
    assert not isinstance(plain_loader.batch_sampler, BucketBatchSampler)
    assert isinstance(plain_loader.sampler, RandomSampler)
    assert plain_loader.batch_size == 16
    # Evaluation batches are never shuffled, with or without bucketing.
    for module in (bucketed, plain):
        val_sampler = module.val_dataloader().batch_sampler
        assert isinstance(val_sampler, BucketBatchSampler)
        assert not val_sampler.shuffle


def test_bucketing_cuts_padding(realistic_csv: Path) -> None:
    bucketed = TextFileDataModule(str(realistic_csv), batch_size=32)
    plain = TextFileDataModule(str(realistic_csv), batch_size=32, bucketing=False)
    bucketed.setup("fit")
    plain.setup("fit")
    torch.manual_seed(0)
    with_buckets = epoch_padding_ratio(bucketed.train_dataloader())
    without = epoch_padding_ratio(plain.train_dataloader())
    assert without > 0.4
    assert with_buckets < 0.15  # about 0.08 here
    assert with_buckets < without / 5


@pytest.mark.parametrize("bucketing", [True, False])
def test_batches_are_consistent_and_cover_the_split_once(realistic_csv: Path, bucketing: bool) -> None:
    module = TextFileDataModule(str(realistic_csv), batch_size=24, eval_batch_size=50, bucketing=bucketing)
    module.setup("fit")
    for split, loader in (("train", module.train_dataloader()), ("val", module.val_dataloader())):
        seen = []
        for batch in loader:
            assert_consistent_batch(batch, module.pad_id)
            assert len(batch) <= (24 if split == "train" else 50)
            for row, index in enumerate(batch.extras["index"].tolist()):
                example = module.datasets[split][index]
                assert torch.equal(batch.inputs[row, : batch.lengths[row]], example["inputs"])
                assert batch.targets[row].item() == example["target"]
            seen += batch.extras["index"].tolist()
        assert sorted(seen) == list(range(len(module.datasets[split]))), split


def test_val_batches_are_sorted_by_length_and_repeatable(realistic_csv: Path) -> None:
    module = TextFileDataModule(str(realistic_csv), eval_batch_size=40)
    module.setup("fit")
    first = [batch.extras["index"].tolist() for batch in module.val_dataloader()]
    second = [batch.extras["index"].tolist() for batch in module.val_dataloader()]
    assert first == second
    lengths = [len(module.datasets["val"][i]["inputs"]) for batch in first for i in batch]
    assert lengths == sorted(lengths)


def test_train_loader_with_two_workers_sees_every_example_once(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "train.csv", realistic_rows(count=300, seed=1))
    module = TextFileDataModule(str(path), batch_size=16, num_workers=2)
    module.setup("fit")
    loader = module.train_dataloader()
    assert loader.num_workers == 2
    seen = []
    for batch in loader:
        assert_consistent_batch(batch, module.pad_id)
        seen += batch.extras["index"].tolist()
    assert sorted(seen) == list(range(len(module.datasets["train"])))


# -- BBC News ----------------------------------------------------------------------------------

BBC_COUNTS = {"business": 510, "entertainment": 386, "politics": 417, "sports": 511, "tech": 401}
# Per topic round(0.1 * n) val and round(0.2 * n) test articles.
BBC_SPLIT_SIZES = {"train": 1558, "val": 223, "test": 444}


@pytest.fixture(scope="module")
def bbc_articles() -> list[TextExample]:
    return load_bbc_news()


@pytest.fixture(scope="module")
def bbc_splits() -> dict[int, dict[str, list[TextExample]]]:
    """Raw splits of two constructions with different training seeds (same split_seed 0)."""
    result = {}
    for seed in (1, 2):
        module = BBCNewsDataModule(split_seed=0, seed=seed)
        result[seed] = {split: module.read_split(split) for split in ("train", "val", "test")}
    return result


def test_load_bbc_news_counts(bbc_articles: list[TextExample]) -> None:
    assert len(bbc_articles) == 2225
    assert Counter(e.label for e in bbc_articles) == BBC_COUNTS
    assert len({e.source for e in bbc_articles}) == 2225
    assert all(e.text.strip() for e in bbc_articles)
    # Fixed order: topic, then file name.
    assert [e.label for e in bbc_articles] == sorted(e.label for e in bbc_articles)


def test_bbc_news_reads_the_windows_1252_article(bbc_articles: list[TextExample]) -> None:
    (article,) = [e for e in bbc_articles if e.source.endswith("sports/199.txt")]
    assert "\u00a3" in article.text  # the pound sign decoded from cp1252
    assert "\ufffd" not in article.text


def test_bbc_split_sizes_are_fixed(bbc_splits: dict[int, dict[str, list[TextExample]]]) -> None:
    splits = bbc_splits[1]
    assert {split: len(examples) for split, examples in splits.items()} == BBC_SPLIT_SIZES
    for split, fraction in (("val", 0.1), ("test", 0.2)):
        counts = Counter(e.label for e in splits[split])
        assert counts == {topic: round(fraction * n) for topic, n in BBC_COUNTS.items()}


def test_bbc_splits_are_identical_across_constructions_and_seeds(
    bbc_splits: dict[int, dict[str, list[TextExample]]],
) -> None:
    for split in ("train", "val", "test"):
        assert [e.source for e in bbc_splits[1][split]] == [e.source for e in bbc_splits[2][split]]


def test_bbc_splits_share_no_article_file(bbc_splits: dict[int, dict[str, list[TextExample]]]) -> None:
    sources = {split: {e.source for e in examples} for split, examples in bbc_splits[1].items()}
    assert not sources["train"] & sources["val"]
    assert not sources["train"] & sources["test"]
    assert not sources["val"] & sources["test"]
    assert sum(len(s) for s in sources.values()) == 2225


def test_bbc_splits_share_no_article_text(bbc_splits: dict[int, dict[str, list[TextExample]]]) -> None:
    texts = {split: {e.text for e in examples} for split, examples in bbc_splits[1].items()}
    assert not texts["train"] & (texts["val"] | texts["test"])
    assert not texts["val"] & texts["test"]


@pytest.fixture
def cached_bbc(monkeypatch: pytest.MonkeyPatch, bbc_articles: list[TextExample]) -> None:
    """Serve the articles already read instead of reading 2,225 files again."""
    monkeypatch.setattr("rnnlab.data.bbc_news.load_bbc_news", lambda: list(bbc_articles))


@pytest.mark.usefixtures("cached_bbc")
def test_bbc_split_seed_changes_the_split(bbc_splits: dict[int, dict[str, list[TextExample]]]) -> None:
    module = BBCNewsDataModule(split_seed=1)
    same = BBCNewsDataModule(split_seed=0)
    assert [e.source for e in same.read_split("test")] == [e.source for e in bbc_splits[1]["test"]]
    test = module.read_split("test")
    assert len(test) == BBC_SPLIT_SIZES["test"]
    assert [e.source for e in test] != [e.source for e in bbc_splits[1]["test"]]


@pytest.mark.usefixtures("cached_bbc")
def test_bbc_news_datamodule_from_config_sets_up() -> None:
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose(config_name="train", overrides=["data=bbc_news", "seed=7"])
    module = instantiate(cfg.data)
    assert isinstance(module, BBCNewsDataModule)
    assert module.seed == 7
    module.setup()
    assert {split: len(module.datasets[split]) for split in ("train", "val", "test")} == BBC_SPLIT_SIZES
    assert module.spec["labels"]["labels"] == sorted(BBC_COUNTS)
    expected_counts = [n - round(0.1 * n) - round(0.2 * n) for n in BBC_COUNTS.values()]
    assert module.spec["label_counts"] == expected_counts
    assert max(len(example["inputs"]) for example in module.datasets["train"]) == 400  # max_length: 400
    # min_freq: 2 -> exactly the train tokens seen at least twice (within the first 400 of each article).
    counts = Counter(token for e in module.read_split("train") for token in module.tokenize(e.text))
    kept = {token for token, count in counts.items() if count >= 2}
    assert set(module.vocab.tokens) - set(module.vocab.specials) == kept
    json.dumps(module.spec)


# -- keywords ----------------------------------------------------------------------------------


def keyword_texts(**options: Any) -> dict[str, list[str]]:
    module = KeywordsDataModule(num_train=50, num_val=20, num_test=20, **options)
    return {split: [e.text for e in module.read_split(split)] for split in ("train", "val", "test")}


def test_keywords_same_generator_seed_gives_same_texts() -> None:
    first = keyword_texts(generator_seed=4)
    assert first == keyword_texts(generator_seed=4)
    assert first == keyword_texts(generator_seed=4, seed=99)  # the training seed does not change the data
    assert first != keyword_texts(generator_seed=5)
    assert first["train"][:20] != first["val"]


def test_keywords_texts_hold_their_class_keyword() -> None:
    module = KeywordsDataModule(num_classes=3, num_train=200, min_length=2, max_length_generated=9)
    examples = module.read_split("train")
    assert len(examples) == 200
    for example in examples:
        words = example.text.split()
        keywords = [w for w in words if w.startswith("k")]
        assert keywords == [f"k{example.label.removeprefix('class')}"]
        assert 2 <= len(words) <= 9
    assert {e.label for e in examples} == {"class0", "class1", "class2"}


def test_keywords_invalid_options_are_user_errors() -> None:
    with pytest.raises(UserError):
        KeywordsDataModule(num_classes=1)
    with pytest.raises(UserError):
        KeywordsDataModule(min_length=5, max_length_generated=4)
