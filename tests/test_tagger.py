"""The tagger: data module (vocabularies, chars, schemes, errors), character encoder and the task's
padding invariance, decoders and reports."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
import torch

from conftest import ner_splits, write_conll, write_lines
from rnnlab.backbones import CharWordEncoder
from rnnlab.batch import Batch
from rnnlab.data import ConllDataModule
from rnnlab.data.collate import SequenceCollator
from rnnlab.data.conll import TaggedSentence
from rnnlab.data.tagging import truncate_word
from rnnlab.errors import UserError
from rnnlab.tasks import SequenceTagger
from rnnlab.tag_schemes import extract_spans
from rnnlab.tasks.per_class import per_class_report

BACKBONE = {
    "_target_": "rnnlab.backbones.RecurrentBackbone",
    "cell": "lstm",
    "hidden_size": 8,
    "embedding_dim": 6,
    "bidirectional": True,
    "num_layers": 2,
}
OPTIMIZER = {"_target_": "torch.optim.AdamW", "_partial_": True, "lr": 0.01}
CHAR_ENCODER = {"cell": "gru", "hidden_size": 5, "embedding_dim": 4}


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    return {split: write_conll(tmp_path / f"{split}.conll", rows) for split, rows in ner_splits(60, 20, 20).items()}


def datamodule(files: dict[str, Path], **options: object) -> ConllDataModule:
    module = ConllDataModule(
        train_file=str(files["train"]), val_file=str(files["val"]), test_file=str(files["test"]), batch_size=4, **options
    )
    module.setup("fit")
    return module


# -- data ----------------------------------------------------------------------------------------


def test_vocabulary_and_tags_come_from_training_data_only(files: dict[str, Path], tmp_path: Path) -> None:
    write_conll(files["val"], [[("Zanzibar", "B-LOC"), ("unseenword", "O")]])
    module = datamodule(files, min_freq=1)
    assert "Zanzibar" not in module.vocab and "John" in module.vocab
    assert module.tags.labels == ["B-LOC", "B-PER", "I-LOC", "I-PER", "O"]
    assert module.scheme == "IOB2"
    val = module.datasets["val"][0]
    assert val["inputs"].tolist() == [module.vocab.unk_id] * 2
    assert val["target"].tolist() == [module.tags.encode("B-LOC"), module.tags.encode("O")]


def test_min_freq_two_trains_the_unknown_embedding(files: dict[str, Path]) -> None:
    write_conll(files["train"], [*ner_splits(60, 0, 0)["train"], [("Ouagadougou", "B-LOC"), ("today", "O")]])
    module = datamodule(files)
    assert "Ouagadougou" not in module.vocab, "a training singleton maps to <unk>"
    last = module.datasets["train"][-1]["inputs"].tolist()
    assert last == [module.vocab.unk_id, module.vocab.token_to_id("today")]


def test_char_ids_keep_case_and_cover_every_token(files: dict[str, Path]) -> None:
    module = datamodule(files, chars=True, lowercase=True)
    sentence = [("John", "B-PER"), ("visited", "O"), ("Paris", "B-LOC")]
    example = module.encode([TaggedSentence(*zip(*sentence), "x:1")])[0]
    words = [
        "".join(module.char_vocab.decode(row[:n]))
        for row, n in zip(example["chars"].tolist(), example["char_lengths"].tolist(), strict=True)
    ]
    assert words == ["John", "visited", "Paris"]
    assert module.vocab.decode(example["inputs"].tolist()) == ["john", "visited", "paris"]
    assert module.spec["chars"]["vocab_size"] == len(module.char_vocab)


def test_truncate_word_keeps_prefix_and_suffix() -> None:
    assert truncate_word("antidisestablishmentarianism", 8) == "antinism"
    assert truncate_word("abcdefg", 4) == "abfg"
    assert truncate_word("short", 8) == "short"


def test_unseen_tag_is_a_user_error_naming_the_line(files: dict[str, Path]) -> None:
    write_conll(files["val"], [[("Paris", "B-ORG")]], docstart=False)
    with pytest.raises(UserError, match=r"val\.conll:1: token 1 has tag .B-ORG., which never occurs in the training data"):
        datamodule(files)


def test_scheme_option_is_checked_against_the_tags(files: dict[str, Path]) -> None:
    assert datamodule(files, scheme="none").scheme is None
    with pytest.raises(UserError, match="data.scheme must be one of"):
        datamodule(files, scheme="IOB3")
    write_conll(files["train"], [[("Paris", "NOUN"), ("is", "VERB")]] * 3)
    with pytest.raises(UserError, match="data.scheme=IOB2 does not fit"):
        datamodule(files, scheme="IOB2")


IOB1_SENTENCES = [
    [("John", "I-PER"), ("met", "O"), ("Mary", "I-PER"), ("Lee", "I-PER")],
    [("Paris", "I-LOC"), ("Lima", "B-LOC"), ("and", "O"), ("Li", "I-PER")],  # B- between adjacent spans
] * 3


def test_iob1_files_with_b_tags_are_detected_from_the_sentences(files: dict[str, Path]) -> None:
    """CoNLL-2003's original IOB1: the tag set looks like IOB2, the sentences do not."""
    for split in ("train", "val", "test"):
        write_conll(files[split], IOB1_SENTENCES)
    module = datamodule(files)
    assert module.scheme == "IOB1"
    model = tagger(module, decoder="crf")
    batch = SequenceCollator(module.pad_id)(module.datasets["train"])
    with torch.no_grad():  # every gold path is allowed: the constrained CRF's loss stays small
        assert model.head.loss(model.emissions(batch), batch.targets, batch.mask).item() < 10


def test_sentences_that_break_the_given_scheme_are_a_user_error(files: dict[str, Path]) -> None:
    for split in ("train", "val", "test"):
        write_conll(files[split], IOB1_SENTENCES, docstart=False)
    with pytest.raises(UserError, match=r"train\.conll:1: token 1 \('John'\) has tag 'I-PER' after the sentence start, which IOB2"):
        datamodule(files, scheme="IOB2")


def test_split_carved_from_train_file_when_val_and_test_missing(files: dict[str, Path]) -> None:
    module = ConllDataModule(train_file=str(files["train"]), val_fraction=0.2, test_fraction=0.2)
    module.setup()
    sizes = {split: len(examples) for split, examples in module.datasets.items()}
    assert sizes["val"] > 0 and sizes["test"] > 0 and sum(sizes.values()) == 60


def test_data_module_pickles_after_setup(files: dict[str, Path]) -> None:
    """ddp_spawn and spawn-started DataLoader workers pickle what they are given."""
    module = pickle.loads(pickle.dumps(datamodule(files, chars=True)))
    assert module.spec["scheme"] == "IOB2" and len(module.datasets["train"]) == 60


def test_predict_file_holds_one_sentence_per_line(files: dict[str, Path], tmp_path: Path) -> None:
    module = datamodule(files, chars=True)
    inputs = module.load_predict_file(str(write_lines(tmp_path / "in.txt", ["John visited Paris", "", "Wakanda"])))
    assert inputs == [{"tokens": ["John", "visited", "Paris"]}, {"tokens": ["Wakanda"]}]
    assert [len(example["inputs"]) for example in module.datasets["predict"]] == [3, 1]
    assert "chars" in module.datasets["predict"][1]


# -- the character encoder -------------------------------------------------------------------


def test_char_encoder_ignores_both_levels_of_padding() -> None:
    torch.manual_seed(0)
    encoder = CharWordEncoder(num_chars=12, **CHAR_ENCODER).eval()
    chars = torch.randint(1, 12, (2, 3, 6))
    char_lengths = torch.tensor([[6, 2, 1], [3, 0, 0]])
    mask = char_lengths > 0
    with torch.no_grad():
        out = encoder(chars, char_lengths, mask)
        assert out.shape == (2, 3, 10)
        assert torch.equal(out[1, 1:], torch.zeros(2, 10))
        for b, t in [(0, 0), (0, 1), (0, 2), (1, 0)]:
            n = int(char_lengths[b, t])
            alone = encoder(chars[b : b + 1, t : t + 1, :n], char_lengths[b : b + 1, t : t + 1], mask[b : b + 1, t : t + 1])
            torch.testing.assert_close(out[b, t], alone[0, 0], atol=1e-6, rtol=0)
        garbage = chars.clone()
        garbage[0, 1, 2:] = 11  # characters past the word's length
        torch.testing.assert_close(encoder(garbage, char_lengths, mask), out)


# -- the task --------------------------------------------------------------------------------


def tagger(module: ConllDataModule, **options: object) -> SequenceTagger:
    torch.manual_seed(0)
    return SequenceTagger(module.spec, BACKBONE, OPTIMIZER, **options).eval()


@pytest.mark.parametrize("decoder", ["softmax", "crf"])
@pytest.mark.parametrize("chars", [False, True])
def test_predictions_do_not_depend_on_padding(files: dict[str, Path], decoder: str, chars: bool) -> None:
    module = datamodule(files, chars=chars)
    model = tagger(module, decoder=decoder, char_encoder=CHAR_ENCODER if chars else None)
    examples = module.datasets["val"][:6]
    collate = SequenceCollator(module.pad_id)
    batch = collate(examples)
    assert not batch.mask.all(), "the batch must contain padding"
    with torch.no_grad():
        emissions = model.emissions(batch)
        records = model.predict_step(batch)
        for row, example in enumerate(examples):
            alone = collate([example])
            length = len(example["inputs"])
            torch.testing.assert_close(emissions[row, :length], model.emissions(alone)[0], atol=1e-5, rtol=0)
            assert records[row]["tags"] == model.predict_step(alone)[0]["tags"]
            assert len(records[row]["tags"]) == length


@pytest.mark.parametrize("decoder", ["softmax", "crf"])
def test_metrics_count_valid_tokens_only(files: dict[str, Path], decoder: str) -> None:
    """Token accuracy and span F1 of a padded batch equal those computed by hand from each
    sentence's own predictions (padding neither counts as right nor as wrong)."""
    module = datamodule(files)
    model = tagger(module, decoder=decoder)
    examples = module.datasets["val"][:8]
    batch = SequenceCollator(module.pad_id)(examples)
    assert not batch.mask.all()
    with torch.no_grad():
        model.compute(batch, "val")
        records = model.predict_step(batch)
    gold = [[model.labels[t] for t in example["target"].tolist()] for example in examples]
    predicted = [record["tags"] for record in records]
    pairs = [(g, p) for gs, ps in zip(gold, predicted) for g, p in zip(gs, ps, strict=True)]
    assert model.accuracy["val_acc"].compute().item() == pytest.approx(sum(g == p for g, p in pairs) / len(pairs))
    gold_spans = {(i, span) for i, tags in enumerate(gold) for span in extract_spans(tags, "IOB2")}
    predicted_spans = {(i, span) for i, tags in enumerate(predicted) for span in extract_spans(tags, "IOB2")}
    expected_f1 = 2 * len(gold_spans & predicted_spans) / (len(gold_spans) + len(predicted_spans))
    assert model.spans["val_spans"].compute()["f1"].item() == pytest.approx(expected_f1)


def test_crf_constraints_follow_the_detected_scheme(files: dict[str, Path]) -> None:
    module = datamodule(files)
    model = tagger(module, decoder="crf")
    labels = model.labels
    o, i_per = labels.index("O"), labels.index("I-PER")
    emissions = torch.zeros(1, 2, len(labels))
    emissions[0, 0, o] = 5.0
    emissions[0, 1, i_per] = 50.0  # O -> I-PER is invalid under IOB2, whatever the scores
    path = model.head.decode(emissions, torch.ones(1, 2, dtype=torch.bool))[0].tolist()
    assert [labels[t] for t in path] != ["O", "I-PER"]
    unconstrained = tagger(module, decoder="crf", constrained=False)
    assert unconstrained.head.crf is not None
    assert [labels[t] for t in unconstrained.head.decode(emissions, torch.ones(1, 2, dtype=torch.bool))[0].tolist()] == ["O", "I-PER"]


def test_metrics_and_monitor_follow_the_scheme(files: dict[str, Path]) -> None:
    spans = tagger(datamodule(files))
    assert spans.default_monitor == "val/f1" and spans.metric_mode("val/f1") == "max"
    plain = tagger(datamodule(files, scheme="none"))
    assert plain.default_monitor == "val/acc"
    with pytest.raises(UserError, match="form no spans"):
        plain.metric_mode("val/f1")


def test_data_made_for_another_task_is_a_user_error(files: dict[str, Path]) -> None:
    spec = {**datamodule(files).spec, "task": "classification"}
    with pytest.raises(UserError, match=r"SequenceTagger needs tagging data \(data=conll or brown_pos\); the data given is for classification"):
        SequenceTagger(spec, BACKBONE, OPTIMIZER, char_encoder=CHAR_ENCODER)


def test_char_encoder_needs_char_inputs(files: dict[str, Path]) -> None:
    with pytest.raises(UserError, match="model/char_encoder=lstm"):
        tagger(datamodule(files), char_encoder=CHAR_ENCODER)


@pytest.mark.parametrize("decoder", ["softmax", "crf"])
def test_loss_is_a_mean_over_tokens_and_learns(files: dict[str, Path], decoder: str) -> None:
    module = datamodule(files)
    model = tagger(module, decoder=decoder).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=0.02)
    batch: Batch = SequenceCollator(module.pad_id)(module.datasets["train"][:16])
    with torch.no_grad():
        emissions = model.emissions(batch)
        if decoder == "softmax":
            total = -torch.log_softmax(emissions, -1)[batch.mask].gather(1, batch.targets[batch.mask].unsqueeze(1)).sum()
        else:
            total = -model.head.crf.log_likelihood(emissions, batch.targets, batch.mask).sum()
        assert model.head.loss(emissions, batch.targets, batch.mask).item() == pytest.approx((total / batch.mask.sum()).item(), rel=1e-5)
    losses = []
    for _ in range(100):
        loss = model.head.loss(model.emissions(batch), batch.targets, batch.mask)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.1 * losses[0]
    predicted = model.eval().head.decode(model.emissions(batch), batch.mask)
    assert (predicted[batch.mask] == batch.targets[batch.mask]).float().mean() > 0.95


def test_per_class_report_counts_per_tag() -> None:
    confusion = torch.tensor([[3, 1], [0, 2]])  # gold A: 3 right, 1 as B; gold B: 2 right
    report = per_class_report(confusion, ["A", "B"])
    assert report["A"] == {"precision": 1.0, "recall": 0.75, "f1": pytest.approx(6 / 7), "support": 4}
    assert report["B"]["precision"] == pytest.approx(2 / 3) and report["B"]["recall"] == 1.0
