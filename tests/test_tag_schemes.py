"""Tag schemes: span extraction (conlleval rules, violations included), detection, allowed transitions."""

from __future__ import annotations

import random

import pytest
from seqeval.metrics.sequence_labeling import get_entities

from rnnlab.errors import UserError
from rnnlab.tag_schemes import (
    SCHEMES,
    allowed_transitions,
    check_scheme,
    detect_scheme,
    extract_spans,
    first_violation,
)


def tags(text: str) -> list[str]:
    return text.split()


@pytest.mark.parametrize(
    ("scheme", "sequence", "spans"),
    [
        ("IOB2", "B-PER I-PER O B-LOC", [("PER", 0, 1), ("LOC", 3, 3)]),
        ("IOB2", "B-PER B-PER I-PER", [("PER", 0, 0), ("PER", 1, 2)]),
        ("IOB2", "O O O", []),
        ("IOB2", "", []),
        ("IOB2", "B-PER I-PER", [("PER", 0, 1)]),  # a span running to the end
        # Violations, read as conlleval reads them:
        ("IOB2", "O I-PER I-PER O", [("PER", 1, 2)]),  # I- after O starts a span
        ("IOB2", "I-PER", [("PER", 0, 0)]),  # ... and so does I- first
        ("IOB2", "B-PER I-LOC", [("PER", 0, 0), ("LOC", 1, 1)]),  # a type change splits
        ("IOB2", "B-PER I-LOC I-LOC B-LOC", [("PER", 0, 0), ("LOC", 1, 2), ("LOC", 3, 3)]),
        ("IOB1", "I-PER I-PER O I-LOC", [("PER", 0, 1), ("LOC", 3, 3)]),
        ("IOB1", "I-PER B-PER I-PER", [("PER", 0, 0), ("PER", 1, 2)]),
        ("IOB1", "I-PER I-LOC", [("PER", 0, 0), ("LOC", 1, 1)]),
        ("IOB1", "B-PER O", [("PER", 0, 0)]),  # B- first: a span, as conlleval has it
        ("BIOES", "B-PER I-PER E-PER S-LOC O S-PER", [("PER", 0, 2), ("LOC", 3, 3), ("PER", 5, 5)]),
        ("BIOES", "S-PER S-PER", [("PER", 0, 0), ("PER", 1, 1)]),
        ("BIOES", "B-PER E-PER E-PER", [("PER", 0, 1), ("PER", 2, 2)]),  # E- after E- starts a span
        ("BIOES", "E-PER I-PER E-PER", [("PER", 0, 0), ("PER", 1, 2)]),  # a span after E- starts anew
        ("BIOES", "B-PER I-PER O", [("PER", 0, 1)]),  # no E-: the span ends at O
        ("BIOES", "B-PER S-PER", [("PER", 0, 0), ("PER", 1, 1)]),
        ("BIOES", "O I-LOC E-LOC", [("LOC", 1, 2)]),
        ("BIOES", "B-PER E-LOC", [("PER", 0, 0), ("LOC", 1, 1)]),
    ],
)
def test_extract_spans(scheme: str, sequence: str, spans: list[tuple[str, int, int]]) -> None:
    assert extract_spans(tags(sequence), scheme) == spans


def test_tags_outside_the_scheme_count_as_outside() -> None:
    assert extract_spans(tags("B-PER E-PER <pad> I-PER"), "IOB2") == [("PER", 0, 0), ("PER", 3, 3)]
    assert extract_spans(tags("B-PER E-PER"), "BIOES") == [("PER", 0, 1)]


@pytest.mark.parametrize("scheme", SCHEMES)
def test_extract_spans_matches_seqeval_default_mode_on_random_sequences(scheme: str) -> None:
    # seqeval's default mode implements conlleval's rules, extended with E-/S-.
    prefixes = "BIES" if scheme == "BIOES" else "BI"
    labels = ["O"] + [f"{p}-{kind}" for p in prefixes for kind in ("PER", "LOC", "MISC")]
    rng = random.Random(0)
    for _ in range(500):
        sequence = [rng.choice(labels) for _ in range(rng.randint(0, 12))]
        assert extract_spans(sequence, scheme) == get_entities(sequence)


def test_unknown_scheme_is_a_user_error() -> None:
    with pytest.raises(UserError, match=r"data\.scheme must be one of IOB1, IOB2, BIOES"):
        check_scheme("BILOU")
    with pytest.raises(UserError):
        extract_spans(["O"], "iob2")


@pytest.mark.parametrize(
    ("label_set", "scheme"),
    [
        ({"O", "B-PER", "I-PER", "B-LOC", "I-LOC", "B-MISC"}, "IOB2"),
        ({"O", "I-PER", "I-LOC", "B-LOC"}, "IOB2"),  # IOB1 data with B-: indistinguishable, must be configured
        ({"O", "I-PER", "I-LOC"}, "IOB1"),
        ({"O", "B-PER", "I-PER", "E-PER", "S-PER", "S-LOC"}, "BIOES"),
        ({"O", "S-LOC"}, "BIOES"),
        ({"NN", "VB", "DT", "O"}, None),  # POS tags
        ({"NOUN", "VERB", "B-PER"}, None),  # one non-span tag is enough
        ({"O"}, None),
        ({"B-", "O"}, None),
        ({"X-PER", "O"}, None),
        (set(), None),
    ],
)
def test_detect_scheme(label_set: set[str], scheme: str | None) -> None:
    assert detect_scheme(label_set) == scheme
    assert detect_scheme(iter(sorted(label_set))) == scheme  # any iterable


def test_allowed_transitions_iob2() -> None:
    labels = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC", "<pad>"]
    start, transitions, end = allowed_transitions(labels, "IOB2")
    ix = {label: i for i, label in enumerate(labels)}
    assert start.tolist() == [True, True, False, True, False, True]
    assert end.all()
    assert transitions.shape == (6, 6)
    assert not transitions[ix["O"], ix["I-PER"]]
    assert transitions[ix["B-PER"], ix["I-PER"]] and transitions[ix["I-PER"], ix["I-PER"]]
    assert not transitions[ix["B-LOC"], ix["I-PER"]]
    assert not transitions[ix["I-LOC"], ix["I-PER"]]
    assert transitions[:, ix["O"]].all() and transitions[:, ix["B-PER"]].all()
    assert transitions[ix["<pad>"]].all() and transitions[:, ix["<pad>"]].all()  # outside the scheme: free


def test_allowed_transitions_iob1() -> None:
    labels = ["O", "I-PER", "B-PER", "I-LOC"]
    start, transitions, end = allowed_transitions(labels, "IOB1")
    assert start.tolist() == [True, True, False, True]
    assert end.all()
    assert transitions[:, 1].all() and transitions[:, 3].all()  # I- may follow anything
    assert transitions[:, 2].tolist() == [False, True, True, False]  # B-PER only after I-PER / B-PER


def test_allowed_transitions_bioes() -> None:
    labels = ["O", "B-PER", "I-PER", "E-PER", "S-PER", "B-LOC", "E-LOC"]
    start, transitions, end = allowed_transitions(labels, "BIOES")
    assert start.tolist() == [True, True, False, False, True, True, False]
    assert end.tolist() == [True, False, False, True, True, False, True]
    assert transitions[1].tolist() == [False, False, True, True, False, False, False]  # B-PER -> I-PER | E-PER
    assert transitions[2].tolist() == [False, False, True, True, False, False, False]  # I-PER -> I-PER | E-PER
    for after in (0, 3, 4, 6):  # O, E-, S- -> O | B- | S-
        assert transitions[after].tolist() == [True, True, False, False, True, True, False]
    assert not transitions[5, 3]  # B-LOC -> E-PER


@pytest.mark.parametrize(
    ("tags", "scheme", "expected"),
    [
        (["O", "I-PER", "I-PER"], "IOB2", 1),
        (["O", "I-PER", "I-PER"], "IOB1", None),
        (["I-PER"], "IOB2", 0),
        (["B-PER", "I-PER", "O"], "IOB2", None),
        (["B-PER", "I-LOC"], "IOB2", 1),
        (["I-PER", "B-PER"], "IOB1", None),
        (["O", "B-PER"], "IOB1", 1),
        (["S-PER", "B-LOC", "E-LOC"], "BIOES", None),
        (["B-PER", "I-PER"], "BIOES", 1),  # a span must end with E-
        (["NN", "I-PER"], "IOB2", None),  # tags outside the scheme may be followed by anything
        ([], "IOB2", None),
    ],
)
def test_first_violation(tags: list[str], scheme: str, expected: int | None) -> None:
    assert first_violation(tags, scheme) == expected
