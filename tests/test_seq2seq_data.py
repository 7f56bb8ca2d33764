"""Seq2seq data modules: tsv_pairs files, multiple references, copy / reverse, CMUdict G2P, digit names."""

from __future__ import annotations

import json
import pickle
import random
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from rnnlab.batch import IGNORE_INDEX
from rnnlab.data import (
    CmudictG2PDataModule,
    CopyDataModule,
    DigitsNamesDataModule,
    ReverseDataModule,
    Seq2SeqCollator,
    TsvPairsDataModule,
    read_cmudict,
)
from rnnlab.data.cmudict_g2p import split_words
from rnnlab.data.digits import NAMES
from rnnlab.data.pairs import SequencePair
from rnnlab.data.seq2seq import join_tokens
from rnnlab.errors import UserError

CONF_DIR = str(Path(__file__).resolve().parents[1] / "conf")
TRAIN_LETTERS = "abcdef"


def write_pairs(path: Path, pairs: list[tuple[str, str]]) -> Path:
    path.write_text("".join(f"{source}\t{target}\n" for source, target in pairs), encoding="utf-8")
    return path


def training_pairs(count: int = 60, seed: int = 0) -> list[tuple[str, str]]:
    """``count`` distinct sources of the letters a-f; source i has 1 + i % 3 pairs, with the targets
    "<SOURCE REVERSED, UPPERCASE><k>" for k = 0, 1, 2 (so each one's targets are distinct)."""
    rng = random.Random(seed)
    sources: list[str] = []
    while len(sources) < count:
        word = "".join(rng.choice(TRAIN_LETTERS) for _ in range(rng.randint(2, 7)))
        if word not in sources:
            sources.append(word)
    pairs = [(source, f"{source[::-1].upper()}{k}") for i, source in enumerate(sources) for k in range(1 + i % 3)]
    rng.shuffle(pairs)  # a source's pairs are spread over the file
    return pairs


@pytest.fixture
def train_tsv(tmp_path: Path) -> Path:
    return write_pairs(tmp_path / "train.tsv", training_pairs())


@pytest.fixture
def test_tsv(tmp_path: Path) -> Path:
    # "abc" twice (two references, in file order); x, y, z and the target letter Q never occur in training.
    pairs = [("abc", "CBA0"), ("xyz", "ZYX0"), ("abc", "CBA1"), ("fed", "DEQ"), ("abc", "CBA0")]
    return write_pairs(tmp_path / "test.tsv", pairs)


def decode(module: Any, ids: list[int], side: str = "target") -> str:
    vocab = module.target_vocab if side == "target" else module.vocab
    name = module.target_tokenizer_name if side == "target" else module.source_tokenizer_name
    return join_tokens(vocab.decode(ids), name)


# -- tsv_pairs ---------------------------------------------------------------------------------


def test_carving_keeps_every_pair_of_a_source_in_one_split(train_tsv: Path) -> None:
    module = TsvPairsDataModule(str(train_tsv), val_fraction=0.2, test_fraction=0.2, split_seed=1)
    splits = {split: module.read_split(split) for split in ("train", "val", "test")}
    sources = {split: {pair.source for pair in pairs} for split, pairs in splits.items()}
    assert not sources["train"] & sources["val"]
    assert not sources["train"] & sources["test"]
    assert not sources["val"] & sources["test"]
    assert sum(len(pairs) for pairs in splits.values()) == len(training_pairs())
    for split in ("val", "test"):
        assert splits[split], split
    # The training seed does not move the split; split_seed does.
    same = TsvPairsDataModule(str(train_tsv), val_fraction=0.2, test_fraction=0.2, split_seed=1, seed=9)
    other = TsvPairsDataModule(str(train_tsv), val_fraction=0.2, test_fraction=0.2, split_seed=2)
    assert same.read_split("val") == splits["val"]
    assert other.read_split("val") != splits["val"]


def test_train_keeps_every_pair_and_val_merges_references(train_tsv: Path) -> None:
    module = TsvPairsDataModule(str(train_tsv), val_fraction=0.2, test_fraction=0.2)
    module.setup()
    train_pairs = module.read_split("train")
    assert len(module.datasets["train"]) == len(train_pairs)
    for pair, example in zip(train_pairs, module.datasets["train"], strict=True):
        assert decode(module, example["inputs"].tolist(), "source") == pair.source
        assert decode(module, example["references"][0]) == pair.target
        assert len(example["references"]) == 1
    for split in ("val", "test"):
        pairs = module.read_split(split)
        targets: dict[str, list[str]] = {}
        for pair in pairs:
            targets.setdefault(pair.source, []).append(pair.target)
        examples = module.datasets[split]
        assert len(examples) == len(targets) < len(pairs)
        for index, (example, (source, expected)) in enumerate(zip(examples, targets.items(), strict=True)):
            assert example["index"] == index
            assert decode(module, example["inputs"].tolist(), "source") == source
            assert [decode(module, reference) for reference in example["references"]] == expected


def test_vocabularies_come_from_train_and_targets_end_with_eos(train_tsv: Path, test_tsv: Path) -> None:
    module = TsvPairsDataModule(str(train_tsv), test_file=str(test_tsv))
    module.setup()
    source_vocab, target_vocab = module.vocab, module.target_vocab
    assert source_vocab is not target_vocab
    assert set(source_vocab.tokens) - set(source_vocab.specials) == set(TRAIN_LETTERS)
    # Train targets: uppercase letters and the digits 0-2 (the last character of every target).
    assert set(target_vocab.tokens) - set(target_vocab.specials) == set(TRAIN_LETTERS.upper()) | {"0", "1", "2"}
    for example in module.datasets["train"]:
        target = example["target"].tolist()
        assert target[-1] == target_vocab.eos_id
        assert target[:-1] == example["references"][0]
        assert target_vocab.eos_id not in target[:-1]
    abc, xyz, fed = module.datasets["test"]
    # "abc" appears three times with two distinct targets, in file order; its target is the first.
    assert [decode(module, reference) for reference in abc["references"]] == ["CBA0", "CBA1"]
    assert abc["target"].tolist() == [*target_vocab.encode("CBA0"), target_vocab.eos_id]
    assert xyz["inputs"].tolist() == [source_vocab.unk_id] * 3
    assert xyz["references"] == [target_vocab.encode(["<unk>"] * 3 + ["0"])]
    assert fed["references"] == [target_vocab.encode(["D", "E", "<unk>"])]


def test_shared_vocab_and_word_tokenizers_lowercase_only_the_source(tmp_path: Path) -> None:
    pairs = [("Hello World", "Bonjour Monde"), ("Good Morning", "Bonjour"), ("World", "Monde")]
    path = write_pairs(tmp_path / "words.tsv", pairs)
    module = TsvPairsDataModule(
        str(path),
        val_file=str(path),
        source_tokenizer="word",
        target_tokenizer="word",
        lowercase=True,
        shared_vocab=True,
    )
    module.setup("fit")
    assert module.vocab is module.target_vocab
    words = set(module.vocab.tokens) - set(module.vocab.specials)
    assert words == {"hello", "world", "good", "morning", "Bonjour", "Monde"}
    first = module.datasets["train"][0]
    assert decode(module, first["inputs"].tolist(), "source") == "hello world"
    assert decode(module, first["references"][0]) == "Bonjour Monde"
    assert module.spec["shared_vocab"] is True


def test_spec_round_trips_and_needs_no_train_file(train_tsv: Path, test_tsv: Path, tmp_path: Path) -> None:
    fitted = TsvPairsDataModule(str(train_tsv), test_file=str(test_tsv))
    fitted.setup()
    spec = json.loads(json.dumps(fitted.spec))
    assert spec == fitted.spec
    assert spec["task"] == "seq2seq"
    assert spec["input"]["kind"] == "tokens" and spec["input"]["tokenizer"] == "char"
    assert spec["target"]["pad_id"] == fitted.target_vocab.pad_id
    assert spec["target"]["vocab_size"] == len(fitted.target_vocab)
    assert spec["target"]["tokenizer"] == "char"
    # The spec's settings win over the constructor's, and nothing is read for fitting.
    rebuilt = TsvPairsDataModule(
        str(tmp_path / "missing.tsv"), test_file=str(test_tsv), spec=spec, source_tokenizer="word", lowercase=True
    )
    rebuilt.setup("test")
    assert set(rebuilt.datasets) == {"test"}
    assert rebuilt.spec == fitted.spec
    for a, b in zip(rebuilt.datasets["test"], fitted.datasets["test"], strict=True):
        assert torch.equal(a["inputs"], b["inputs"])
        assert torch.equal(a["target"], b["target"])
        assert a["references"] == b["references"]
        assert a["index"] == b["index"]
    with pytest.raises(UserError, match="no such file"):
        rebuilt.setup("fit")


def test_spec_round_trip_keeps_a_shared_vocabulary(train_tsv: Path, test_tsv: Path, tmp_path: Path) -> None:
    fitted = TsvPairsDataModule(str(train_tsv), test_file=str(test_tsv), shared_vocab=True)
    fitted.setup()
    rebuilt = TsvPairsDataModule(str(tmp_path / "missing.tsv"), test_file=str(test_tsv), spec=fitted.spec)
    assert rebuilt.vocab is rebuilt.target_vocab
    assert rebuilt.vocab == fitted.vocab
    assert rebuilt.spec == fitted.spec


def test_collator_pads_targets_and_passes_references(train_tsv: Path) -> None:
    module = TsvPairsDataModule(str(train_tsv), val_fraction=0.3, test_fraction=0.1, batch_size=8, eval_batch_size=16)
    module.setup("fit")
    collator = module.collator()
    assert isinstance(collator, Seq2SeqCollator)
    assert repr(pickle.loads(pickle.dumps(collator))) == repr(collator)
    for split, loader in (("train", module.train_dataloader()), ("val", module.val_dataloader())):
        seen = []
        for batch in loader:
            examples = [module.datasets[split][i] for i in batch.extras["index"].tolist()]
            size = len(examples)
            assert batch.inputs.shape == (size, max(len(e["inputs"]) for e in examples))
            assert batch.targets.shape == (size, max(len(e["target"]) for e in examples))
            assert batch.extras["references"] == [e["references"] for e in examples]
            for row, example in enumerate(examples):
                length = len(example["target"])
                assert torch.equal(batch.targets[row, :length], example["target"])
                assert (batch.targets[row, length:] == IGNORE_INDEX).all()
                assert torch.equal(batch.inputs[row, : batch.lengths[row]], example["inputs"])
            seen += batch.extras["index"].tolist()
        assert sorted(seen) == list(range(len(module.datasets[split])))


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("ab\tBA\nno tab\n", r"train\.tsv:2: expected source<TAB>target"),
        ("ab\tBA\n\tXY\n", r"train\.tsv:2: empty source"),
        (b"ab\tBA\nc\xe9\tX\n", r"train\.tsv:2: not valid UTF-8"),
    ],
)
def test_bad_train_lines_surface_through_setup(tmp_path: Path, content: str | bytes, message: str) -> None:
    path = tmp_path / "train.tsv"
    path.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
    with pytest.raises(UserError, match=message):
        TsvPairsDataModule(str(path)).setup("fit")


def test_bad_test_file_surfaces_through_setup(train_tsv: Path, tmp_path: Path) -> None:
    bad = tmp_path / "test.tsv"
    bad.write_bytes(b"abc\tCBA\nab\t\n")
    module = TsvPairsDataModule(str(train_tsv), test_file=str(bad))
    module.setup("fit")
    with pytest.raises(UserError, match=r"test\.tsv:2: empty target"):
        module.setup("test")


def test_a_side_without_tokens_names_its_origin(train_tsv: Path) -> None:
    module = TsvPairsDataModule(str(train_tsv))
    module.setup("fit")
    with pytest.raises(UserError, match=r"^mem:7: the source has no tokens$"):
        module.encode([SequencePair(" ", "AB", "mem:7")], merge_references=False)
    with pytest.raises(UserError, match=r"^mem:8: the target has no tokens$"):
        module.encode([SequencePair("ab", "  ", "mem:8")], merge_references=True)


def test_bad_options_name_their_config_key(train_tsv: Path) -> None:
    with pytest.raises(UserError, match="data.source_tokenizer"):
        TsvPairsDataModule(str(train_tsv), source_tokenizer="bpe")
    with pytest.raises(UserError, match="data.target_tokenizer"):
        TsvPairsDataModule(str(train_tsv), target_tokenizer="bpe")
    with pytest.raises(UserError, match="data.min_freq"):
        TsvPairsDataModule(str(train_tsv), min_freq=0)
    with pytest.raises(UserError, match="data.val_fraction"):
        TsvPairsDataModule(str(train_tsv), val_fraction=1.0)


def test_empty_carved_split_names_the_options(train_tsv: Path) -> None:
    module = TsvPairsDataModule(str(train_tsv), val_fraction=0.0)
    with pytest.raises(UserError, match=r"val split is empty .*data\.val_fraction=0\.0 .* selects no pairs"):
        module.setup("fit")


def test_spec_before_setup_is_an_error(train_tsv: Path) -> None:
    with pytest.raises(RuntimeError, match="setup"):
        TsvPairsDataModule(str(train_tsv)).spec  # noqa: B018


def test_load_predict_file_encodes_sources_in_order(train_tsv: Path, tmp_path: Path) -> None:
    module = TsvPairsDataModule(str(train_tsv), lowercase=True)
    module.setup("fit")
    predict = tmp_path / "predict.txt"
    predict.write_text("ABC\nxyz\nfade\n", encoding="utf-8")
    assert module.load_predict_file(str(predict)) == [{"source": "ABC"}, {"source": "xyz"}, {"source": "fade"}]
    examples = module.datasets["predict"]
    assert [set(example) for example in examples] == [{"inputs", "index"}] * 3
    assert [example["index"] for example in examples] == [0, 1, 2]
    assert examples[0]["inputs"].tolist() == module.vocab.encode("abc")
    assert examples[1]["inputs"].tolist() == [module.vocab.unk_id] * 3
    batch = next(iter(module.predict_dataloader()))
    assert batch.targets is None and "references" not in batch.extras
    predict.write_text("abc\n \n", encoding="utf-8")
    with pytest.raises(UserError, match=r"predict\.txt:2: empty input"):
        module.load_predict_file(str(predict))


# -- copy / reverse ----------------------------------------------------------------------------


def symbol_pairs(module_class: type[CopyDataModule], **options: Any) -> dict[str, list[SequencePair]]:
    module = module_class(num_train=60, num_val=30, num_test=30, **options)
    return {split: module.read_split(split) for split in ("train", "val", "test")}


@pytest.mark.parametrize("module_class", [CopyDataModule, ReverseDataModule])
def test_copy_and_reverse_targets(module_class: type[CopyDataModule]) -> None:
    splits = symbol_pairs(module_class, num_symbols=5, min_length=2, max_length=6)
    lengths = Counter()
    for pairs in splits.values():
        for pair in pairs:
            symbols = pair.source.split()
            lengths[len(symbols)] += 1
            assert set(symbols) <= {"0", "1", "2", "3", "4"}
            expected = symbols[::-1] if module_class is ReverseDataModule else symbols
            assert pair.target.split() == expected
    assert set(lengths) == {2, 3, 4, 5, 6}
    assert [len(pairs) for pairs in splits.values()] == [60, 30, 30]


def test_generated_data_is_fixed_by_generator_seed() -> None:
    first = symbol_pairs(CopyDataModule, generator_seed=3)
    assert first == symbol_pairs(CopyDataModule, generator_seed=3, seed=99)  # not by the training seed
    assert first != symbol_pairs(CopyDataModule, generator_seed=4)
    assert [p.source for p in first["train"][:30]] != [p.source for p in first["val"]]
    assert [p.source for p in first["val"]] != [p.source for p in first["test"]]


def test_reverse_module_encodes_words_and_merges_duplicate_sources() -> None:
    module = ReverseDataModule(num_symbols=3, min_length=1, max_length=2, num_train=50, num_val=40, num_test=10)
    module.setup("fit")
    assert module.spec["input"]["tokenizer"] == module.spec["target"]["tokenizer"] == "word"
    assert set(module.vocab.tokens) - set(module.vocab.specials) == {"0", "1", "2"}
    assert len(module.datasets["train"]) == 50
    # At most 3 + 9 distinct sources: val duplicates collapse, each with its one (identical) target.
    val_sources = {pair.source for pair in module.read_split("val")}
    assert len(module.datasets["val"]) == len(val_sources) <= 12
    for example in module.datasets["val"]:
        assert len(example["references"]) == 1
        assert example["references"][0] == example["inputs"].tolist()[::-1]


@pytest.mark.parametrize(
    ("options", "key"),
    [
        ({"num_symbols": 1}, "data.num_symbols"),
        ({"min_length": 0}, "data.min_length"),
        ({"min_length": 5, "max_length": 4}, "data.max_length"),
    ],
)
def test_copy_invalid_options_are_user_errors(options: dict[str, int], key: str) -> None:
    with pytest.raises(UserError, match=key):
        CopyDataModule(**options)


# -- CMUdict -----------------------------------------------------------------------------------

FAKE_CMUDICT = {
    "hello": [["HH", "AH0", "L", "OW1"], ["HH", "EH0", "L", "OW1"]],
    # Alternates that differ only in stress: one pronunciation without stress.
    "project": [["P", "R", "AA1", "JH", "EH0", "K", "T"], ["P", "R", "AA0", "JH", "EH1", "K", "T"]],
    "'bout": [["B", "AW1", "T"]],
    "a.m.": [["EY2", "EH1", "M"]],
    "able-bodied": [["EY1", "B", "AH0", "L", "B", "AA1", "D", "IY0", "D"]],
    "''": [["K", "W", "OW1", "T"]],
    "r2d2": [["AA1", "R", "T", "UW1", "D", "IY1", "T", "UW1"]],
    # Filler words "baa" .. "fff" with one phoneme per letter; every third has an alternate.
    **{
        word: [[letter.upper() + "1" for letter in word]] + ([[word[0].upper() + "0"]] if i % 3 == 0 else [])
        for i, word in enumerate(a + b + c for a in "bcdef" for b in "abc" for c in "fg")
    },
}


@pytest.fixture
def fake_cmudict(monkeypatch: pytest.MonkeyPatch) -> dict[str, list[list[str]]]:
    monkeypatch.setattr("rnnlab.data.cmudict_g2p._load_cmudict", lambda: FAKE_CMUDICT)
    return FAKE_CMUDICT


@pytest.mark.usefixtures("fake_cmudict")
def test_read_cmudict_filters_words_and_strips_stress() -> None:
    lexicon = read_cmudict()
    assert "hello" in lexicon and "'bout" in lexicon
    for dropped in ("a.m.", "able-bodied", "''", "r2d2"):
        assert dropped not in lexicon
    assert len(lexicon) == 3 + 30
    assert lexicon["hello"] == ["HH AH0 L OW1", "HH EH0 L OW1"]
    plain = read_cmudict(stress=False)
    assert plain["hello"] == ["HH AH L OW", "HH EH L OW"]
    assert plain["project"] == ["P R AA JH EH K T"]
    assert read_cmudict(alternates="first")["hello"] == ["HH AH0 L OW1"]
    assert read_cmudict(stress=False, alternates="first")["project"] == ["P R AA JH EH K T"]


@pytest.mark.usefixtures("fake_cmudict")
@pytest.mark.parametrize("alternates", ["all", "first"])
def test_cmudict_module_splits_by_word_and_merges_alternates(alternates: str) -> None:
    module = CmudictG2PDataModule(alternates=alternates, val_fraction=0.2, test_fraction=0.2)
    module.setup()
    lexicon = read_cmudict(alternates=alternates)
    words = {split: [pair.source for pair in module.read_split(split)] for split in ("train", "val", "test")}
    assert {split: len(set(w)) for split, w in words.items()} == {"train": 19, "val": 7, "test": 7}
    assert sorted(set().union(*map(set, words.values()))) == sorted(lexicon)
    # Training: one example per pronunciation.
    assert len(module.datasets["train"]) == sum(len(lexicon[word]) for word in set(words["train"]))
    # Held out: one example per word, scored against all its pronunciations.
    for split in ("val", "test"):
        examples = module.datasets[split]
        assert len(examples) == len(set(words[split]))
        for example, word in zip(examples, dict.fromkeys(words[split]), strict=True):
            assert example["inputs"].tolist() == module.vocab.encode(list(word))
            assert example["references"] == [module.target_vocab.encode(p.split()) for p in lexicon[word]]
    if alternates == "first":
        assert all(len(e["references"]) == 1 for split in ("val", "test") for e in module.datasets[split])
    assert module.spec["input"]["tokenizer"] == "char"
    assert module.spec["target"]["tokenizer"] == "word"
    # Phonemes keep their case (the word tokenizer must not lowercase targets).
    phonemes = set(module.target_vocab.tokens) - set(module.target_vocab.specials)
    assert phonemes and all(phoneme == phoneme.upper() for phoneme in phonemes)


def test_split_words_is_deterministic_disjoint_and_sized() -> None:
    words = [f"w{i}" for i in range(1000)]
    parts = split_words(words, 0.05, 0.1, seed=0)
    assert {name: len(part) for name, part in parts.items()} == {"train": 850, "val": 50, "test": 100}
    assert sorted(parts["train"] + parts["val"] + parts["test"]) == sorted(words)
    assert parts == split_words(list(reversed(words)), 0.05, 0.1, seed=0)  # the input order does not matter
    assert parts["val"] != split_words(words, 0.05, 0.1, seed=1)["val"]
    assert all(part == sorted(part) for part in parts.values())


def test_real_cmudict_words_and_default_split() -> None:
    lexicon = read_cmudict()
    assert len(lexicon) > 100_000
    assert lexicon["hello"] == ["HH AH0 L OW1", "HH EH0 L OW1"]
    assert "'bout" in lexicon and "a.m." not in lexicon and "able-bodied" not in lexicon
    module = CmudictG2PDataModule()
    words = {split: {pair.source for pair in module.read_split(split)} for split in ("train", "val", "test")}
    assert len(words["val"]) == round(0.05 * len(lexicon))
    assert len(words["test"]) == round(0.1 * len(lexicon))
    assert not words["train"] & words["val"] and not words["train"] & words["test"] and not words["val"] & words["test"]
    assert len(words["train"]) + len(words["val"]) + len(words["test"]) == len(lexicon)


def test_cmudict_invalid_options_are_user_errors() -> None:
    with pytest.raises(UserError, match="data.alternates"):
        CmudictG2PDataModule(alternates="some")
    with pytest.raises(UserError, match="data.test_fraction"):
        CmudictG2PDataModule(test_fraction=-0.1)


# -- digit names -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def digits() -> DigitsNamesDataModule:
    module = DigitsNamesDataModule()
    module.setup()
    return module


def test_digits_are_one_step_of_64_features_with_spelled_names(digits: DigitsNamesDataModule) -> None:
    assert digits.vocab is None and digits.pad_id == 0
    assert digits.spec["input"] == {"kind": "features", "num_features": 64}
    assert set(digits.target_vocab.tokens) - set(digits.target_vocab.specials) == set("".join(NAMES))
    sizes = {split: len(examples) for split, examples in digits.datasets.items()}
    assert sum(sizes.values()) == 1797
    for split, examples in digits.datasets.items():
        for example in examples:
            inputs = example["inputs"]
            assert inputs.shape == (1, 64) and inputs.dtype == torch.float32
            assert inputs.min() >= 0 and inputs.max() <= 1
            assert decode(digits, example["references"][0]) in NAMES
    batch = next(iter(digits.val_dataloader()))
    assert batch.inputs.shape == (len(batch), 1, 64)
    assert batch.lengths.tolist() == [1] * len(batch)


def test_digits_split_is_stratified_by_digit(digits: DigitsNamesDataModule) -> None:
    totals = Counter(pair.target for split in ("train", "val", "test") for pair in digits.read_split(split))
    assert set(totals) == set(NAMES)
    for split in ("val", "test"):
        counts = Counter(pair.target for pair in digits.read_split(split))
        assert counts == {name: round(0.15 * n) for name, n in totals.items()}, split


def test_digits_spec_round_trip(digits: DigitsNamesDataModule) -> None:
    rebuilt = DigitsNamesDataModule(spec=json.loads(json.dumps(digits.spec)))
    rebuilt.setup("test")
    assert set(rebuilt.datasets) == {"test"}
    assert rebuilt.spec == digits.spec
    for a, b in zip(rebuilt.datasets["test"], digits.datasets["test"], strict=True):
        assert torch.equal(a["inputs"], b["inputs"]) and torch.equal(a["target"], b["target"])
    with pytest.raises(UserError, match="data.shared_vocab"):
        DigitsNamesDataModule(shared_vocab=True)


def test_digits_load_predict_file(digits: DigitsNamesDataModule, tmp_path: Path) -> None:
    pixels = list(range(17)) * 3 + [0] * 13
    lines = [" ".join(map(str, pixels)), ", ".join(f"{p}.0" for p in reversed(pixels))]
    path = tmp_path / "images.txt"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    assert digits.load_predict_file(str(path)) == [{"source": line} for line in lines]
    first, second = digits.datasets["predict"]
    expected = torch.tensor(pixels, dtype=torch.float32) / 16
    assert torch.equal(first["inputs"], expected.unsqueeze(0))
    assert torch.equal(second["inputs"], expected.flip(0).unsqueeze(0))
    for bad, message in (("1 2 3", "found 3 values"), (" ".join(["17"] * 64), "found '17'"), ("x " * 64, "found 'x'")):
        path.write_text(f"{lines[0]}\n{bad}\n", encoding="utf-8")
        with pytest.raises(UserError, match=rf"images\.txt:2: expected 64 pixel values 0\.\.16 .*; {message}"):
            digits.load_predict_file(str(path))


# -- configs -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "module_class", "batch_size"),
    [
        ("tsv_pairs", TsvPairsDataModule, 32),
        ("cmudict_g2p", CmudictG2PDataModule, 64),
        ("copy", CopyDataModule, 32),
        ("reverse", ReverseDataModule, 32),
        ("digits_names", DigitsNamesDataModule, 32),
    ],
)
def test_configs_instantiate(name: str, module_class: type, batch_size: int, train_tsv: Path) -> None:
    overrides = [f"data={name}", "seed=7"] + ([f"data.train_file={train_tsv}"] if name == "tsv_pairs" else [])
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose(config_name="train", overrides=overrides)
    module = instantiate(cfg.data)
    assert type(module) is module_class
    assert module.batch_size == batch_size
    assert module.seed == 7
