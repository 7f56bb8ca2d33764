"""SpanF1: hand-computed span precision / recall / F1, padding, accumulation, and agreement with seqeval."""

from __future__ import annotations

import random

import pytest
import torch
from seqeval.metrics import classification_report, f1_score, precision_score, recall_score
from seqeval.scheme import IOB2, IOBES
from torchmetrics import MetricCollection

from rnnlab.tag_schemes import allowed_transitions
from rnnlab.tasks.span_metrics import SpanF1

PAD = -100
LABELS = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]


def encode(rows: list[str], labels: list[str] = LABELS, steps: int | None = None) -> torch.Tensor:
    """Space-separated tag rows -> ids (B, T), padded with -100."""
    ids = [[labels.index(tag) for tag in row.split()] for row in rows]
    steps = steps or max(len(row) for row in ids)
    return torch.tensor([row + [PAD] * (steps - len(row)) for row in ids])


def scores(metric: SpanF1) -> dict[str, float]:
    return {key: value.item() for key, value in metric.compute().items()}


def span_f1(pred: list[str], gold: list[str], scheme: str = "IOB2", labels: list[str] = LABELS) -> dict[str, float]:
    metric = SpanF1(labels, scheme)
    steps = max(len(row.split()) for row in [*pred, *gold])
    metric.update(encode(pred, labels, steps), encode(gold, labels, steps))
    return scores(metric)


def test_exact_match() -> None:
    assert span_f1(["B-PER I-PER O B-LOC"], ["B-PER I-PER O B-LOC"]) == {"precision": 1.0, "recall": 1.0, "f1": 1.0}


def test_wrong_boundary_or_type_gets_no_credit() -> None:
    # Predicted PER(0, 0) has the wrong end, PER(3, 4) the wrong type: nothing matches.
    result = span_f1(["B-PER O O B-PER I-PER"], ["B-PER I-PER O B-LOC I-LOC"])
    assert result == {"precision": 0.0, "recall": 0.0, "f1": 0.0}


def test_partial_credit() -> None:
    # Gold: PER(0, 1), LOC(3, 3) | none | PER(0, 0).
    # Predicted: PER(0, 1) | PER(0, 0), LOC(2, 3) | PER(0, 0), LOC(1, 1): 2 of 5 right, 2 of 3 found.
    pred = ["B-PER I-PER O O", "B-PER O B-LOC I-LOC", "B-PER B-LOC"]
    result = span_f1(pred, ["B-PER I-PER O B-LOC", "O O O O", "B-PER O"])
    assert result["precision"] == pytest.approx(2 / 5)
    assert result["recall"] == pytest.approx(2 / 3)
    assert result["f1"] == pytest.approx(2 * (2 / 5) * (2 / 3) / (2 / 5 + 2 / 3))


def test_scheme_violations_are_read_as_conlleval_reads_them() -> None:
    # IOB2 gold "O I-PER I-PER" has the span PER(1, 2), which the valid "O B-PER I-PER" matches.
    assert span_f1(["O B-PER I-PER"], ["O I-PER I-PER"])["f1"] == 1.0
    # "B-PER I-LOC" is two spans.
    assert span_f1(["B-PER B-LOC"], ["B-PER I-LOC"])["f1"] == 1.0


def test_iob1_and_bioes() -> None:
    iob1 = ["O", "I-PER", "B-PER", "I-LOC"]
    assert span_f1(["I-PER I-PER B-PER"], ["I-PER B-PER I-PER"], "IOB1", iob1) == pytest.approx(
        {"precision": 0.0, "recall": 0.0, "f1": 0.0}
    )
    assert span_f1(["I-PER B-PER O I-LOC"], ["I-PER B-PER O I-LOC"], "IOB1", iob1)["f1"] == 1.0
    bioes = ["O", "B-PER", "I-PER", "E-PER", "S-PER", "S-LOC"]
    result = span_f1(["B-PER E-PER S-LOC S-PER"], ["B-PER E-PER S-PER S-PER"], "BIOES", bioes)
    assert result["precision"] == pytest.approx(2 / 3) and result["recall"] == pytest.approx(2 / 3)


@pytest.mark.filterwarnings("ignore:The ``compute`` method:UserWarning")
def test_empty_predictions_and_empty_gold_give_zero_not_nan() -> None:
    assert span_f1(["O O O"], ["B-PER O B-LOC"]) == {"precision": 0.0, "recall": 0.0, "f1": 0.0}
    assert span_f1(["B-PER O O"], ["O O O"]) == {"precision": 0.0, "recall": 0.0, "f1": 0.0}
    assert span_f1(["O O"], ["O O"]) == {"precision": 0.0, "recall": 0.0, "f1": 0.0}
    assert scores(SpanF1(LABELS, "IOB2")) == {"precision": 0.0, "recall": 0.0, "f1": 0.0}  # no update at all


def test_padding_is_ignored() -> None:
    metric = SpanF1(LABELS, "IOB2")
    target = encode(["B-PER", "B-LOC I-LOC O"], steps=4)
    # At padding the predictions continue or open spans; none of that may count.
    preds = torch.tensor([[1, 2, 2, 3], [3, 4, 0, 1]])
    metric.update(preds, target)
    assert scores(metric) == {"precision": 1.0, "recall": 1.0, "f1": 1.0}
    metric.update(torch.tensor([[-100, 0, 0, 0]]), target[:1])
    with pytest.raises(ValueError, match="tag ids"):  # when the held update is counted
        metric.compute()


def test_updates_are_held_and_counted_every_count_every_and_before_results(monkeypatch: pytest.MonkeyPatch) -> None:
    """Counting reads the tags on the host (a GPU wait), so it runs once per COUNT_EVERY updates."""
    monkeypatch.setattr(SpanF1, "COUNT_EVERY", 3)
    metric = SpanF1(LABELS, "IOB2")
    target = encode(["B-PER", "B-LOC I-LOC O"], steps=4)
    for held in (1, 2, 0, 1):
        metric.update(target.clone(), target)
        assert len(metric._held) == held
    assert int(metric.gold.sum()) == 3 * 2  # two gold spans in each of the first three updates
    assert scores(metric) == {"precision": 1.0, "recall": 1.0, "f1": 1.0}
    assert int(metric.gold.sum()) == 4 * 2 and not metric._held
    metric.update(target.clone(), target)
    metric.reset()
    assert not metric._held and int(metric.gold.sum()) == 0


@pytest.mark.filterwarnings("ignore:The ``compute`` method:UserWarning")
def test_batches_accumulate_and_reset() -> None:
    pred = ["B-PER I-PER O O", "B-PER O B-LOC I-LOC", "B-PER B-LOC"]
    gold = ["B-PER I-PER O B-LOC", "O O O O", "B-PER O"]
    whole = span_f1(pred, gold)
    metric = SpanF1(LABELS, "IOB2")
    metric.update(encode(pred[:2]), encode(gold[:2]))
    metric.update(encode(pred[2:]), encode(gold[2:]))
    assert scores(metric) == pytest.approx(whole)
    metric.reset()
    assert scores(metric) == {"precision": 0.0, "recall": 0.0, "f1": 0.0}


def test_report_per_type_and_micro() -> None:
    metric = SpanF1(LABELS, "IOB2")
    pred = ["B-PER I-PER O O", "B-PER O B-LOC I-LOC", "B-PER B-LOC"]
    gold = ["B-PER I-PER O B-LOC", "O O O O", "B-PER O"]
    metric.update(encode(pred), encode(gold))
    report = metric.report()
    assert list(report) == ["LOC", "PER", "micro"]
    assert report["PER"] == pytest.approx({"precision": 2 / 3, "recall": 1.0, "f1": 0.8, "support": 2})
    assert report["LOC"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1}
    assert report["micro"]["support"] == 3
    assert report["micro"]["f1"] == pytest.approx(scores(metric)["f1"])


def test_compute_keys_and_types_fit_a_metric_collection() -> None:
    metric = SpanF1(LABELS, "IOB2")
    assert metric.gold.shape == (2,)  # one state entry per span type, fixed by the labels
    collection = MetricCollection({"spans": SpanF1(LABELS, "IOB2")}, prefix="val/")
    collection.update(encode(["B-PER O"]), encode(["B-PER O"]))
    result = collection.compute()
    assert set(result) == {"val/precision", "val/recall", "val/f1"}
    assert all(value.dtype == torch.float32 and value.dim() == 0 for value in result.values())


# -- agreement with seqeval ---------------------------------------------------------------------

SEQEVAL_LABELS = {
    "IOB1": ["O"] + [f"{p}-{kind}" for p in "IB" for kind in ("PER", "LOC", "ORG")],
    "IOB2": ["O"] + [f"{p}-{kind}" for p in "BI" for kind in ("PER", "LOC", "ORG")],
    "BIOES": ["O"] + [f"{p}-{kind}" for p in "BIES" for kind in ("PER", "LOC", "ORG")],
}


def random_rows(rng: random.Random, labels: list[str], count: int) -> list[list[str]]:
    """Tag rows drawn uniformly, so full of scheme violations; mostly O to get some matches."""
    weights = [len(labels)] + [1] * (len(labels) - 1)
    return [rng.choices(labels, weights, k=rng.randint(1, 10)) for _ in range(count)]


def ours(labels: list[str], scheme: str, gold: list[list[str]], pred: list[list[str]]) -> SpanF1:
    metric = SpanF1(labels, scheme)
    for start in range(0, len(gold), 16):  # several batches
        chunk = slice(start, start + 16)
        steps = max(len(row) for row in gold[chunk])
        metric.update(
            encode([" ".join(row) for row in pred[chunk]], labels, steps),
            encode([" ".join(row) for row in gold[chunk]], labels, steps),
        )
    return metric


def assert_same_as_seqeval(metric: SpanF1, gold: list[list[str]], pred: list[list[str]], **seqeval_args) -> None:
    result = scores(metric)
    expected = {
        "precision": precision_score(gold, pred, zero_division=0, **seqeval_args),
        "recall": recall_score(gold, pred, zero_division=0, **seqeval_args),
        "f1": f1_score(gold, pred, zero_division=0, **seqeval_args),
    }
    assert result == pytest.approx(expected, abs=1e-6)
    per_type = classification_report(gold, pred, output_dict=True, zero_division=0, **seqeval_args)
    for kind, row in metric.report().items():
        if kind != "micro" and kind in per_type:
            assert row["f1"] == pytest.approx(per_type[kind]["f1-score"], abs=1e-6)
            assert row["support"] == per_type[kind]["support"]


@pytest.mark.parametrize("scheme", ["IOB1", "IOB2", "BIOES"])
def test_random_sequences_match_seqeval_default_mode(scheme: str) -> None:
    # seqeval's default mode follows conlleval, violations included (its strict mode drops
    # invalid spans instead), so that is the mode SpanF1 reproduces.
    rng = random.Random(scheme)  # seeded by the string itself (str hashes vary per process)
    labels = SEQEVAL_LABELS[scheme]
    gold = random_rows(rng, labels, 64)
    pred = [row if rng.random() < 0.3 else rng.choices(labels, k=len(row)) for row in gold]  # some exact matches
    assert_same_as_seqeval(ours(labels, scheme, gold, pred), gold, pred)


def valid_row(rng: random.Random, labels: list[str], scheme: str, length: int) -> list[str]:
    """A random tag row that obeys the scheme (a random walk over the allowed transitions)."""
    start, transitions, end = allowed_transitions(labels, scheme)
    while True:
        row = [rng.choice([i for i in range(len(labels)) if start[i]])]
        while len(row) < length:
            row.append(rng.choice([j for j in range(len(labels)) if transitions[row[-1], j]]))
        if end[row[-1]]:
            return [labels[i] for i in row]


@pytest.mark.parametrize(("scheme", "seqeval_scheme"), [("IOB2", IOB2), ("BIOES", IOBES)])
def test_valid_random_sequences_also_match_seqeval_strict_mode(scheme: str, seqeval_scheme: type) -> None:
    rng = random.Random(1)
    labels = SEQEVAL_LABELS[scheme]
    gold = [valid_row(rng, labels, scheme, rng.randint(1, 10)) for _ in range(64)]
    pred = [row if rng.random() < 0.3 else valid_row(rng, labels, scheme, len(row)) for row in gold]
    metric = ours(labels, scheme, gold, pred)
    assert_same_as_seqeval(metric, gold, pred)
    assert_same_as_seqeval(metric, gold, pred, mode="strict", scheme=seqeval_scheme)
