"""Span tag schemes (IOB1, IOB2, BIOES): detecting them, reading spans, and the valid tag transitions.

A span tag is ``O`` (outside) or ``<P>-<TYPE>`` with the prefix P in B (begin), I (inside),
and for BIOES also E (end) and S (single). Under IOB2 every span starts with B-; under IOB1
spans start with I- and B- only separates two adjacent spans of the same type.

Shared by the data (detecting the scheme of a tag set), the CRF head (forbidden transitions) and
the span metrics; plain Python over tag strings, apart from the transition masks.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch

from rnnlab.errors import check_choice

SCHEMES = ("IOB1", "IOB2", "BIOES")

OUTSIDE = "O"
_PREFIXES = {"IOB1": ("B", "I"), "IOB2": ("B", "I"), "BIOES": ("B", "I", "E", "S")}


def check_scheme(scheme: str) -> None:
    """Raise a ``UserError`` unless ``scheme`` (config key ``data.scheme``) is one of ``SCHEMES``."""
    check_choice("data.scheme", scheme, SCHEMES)


def split_tag(tag: str, scheme: str) -> tuple[str, str] | None:
    """``B-PER`` -> ``("B", "PER")``, ``O`` -> ``("O", "")``; None for a tag outside the scheme.

    A tag is outside the scheme when it is neither ``O`` nor ``<P>-<TYPE>`` with a prefix the
    scheme uses (``E-PER`` under IOB2, ``NN``, ``<pad>``).
    """
    if tag == OUTSIDE:
        return OUTSIDE, ""
    prefix, sep, kind = tag.partition("-")
    if sep and kind and prefix in _PREFIXES[scheme]:
        return prefix, kind
    return None


def detect_scheme(tags: Iterable[str]) -> str | None:
    """The scheme of a label set (the training data's tags), or None when its tags are not spans.

    The tags are spans when every one is ``O`` or ``<P>-<TYPE>`` with P in B, I, E, S, and at
    least one is not ``O``; any other tag (POS tags such as ``NN``) means None. Any E- or S- tag
    means BIOES. A set with B- tags is IOB2 or IOB1 (IOB1 uses B- between adjacent spans of one
    type), which a set cannot tell apart: it is taken as IOB2, and IOB1 data must say
    ``data.scheme=IOB1``. A set with only I- tags is IOB1.
    """
    prefixes = set()
    for tag in set(tags):
        if tag == OUTSIDE:
            continue
        parsed = split_tag(tag, "BIOES")
        if parsed is None:
            return None
        prefixes.add(parsed[0])
    if not prefixes:
        return None
    if prefixes & {"E", "S"}:
        return "BIOES"
    return "IOB2" if "B" in prefixes else "IOB1"


def first_violation(tags: Sequence[str], scheme: str) -> int | None:
    """The position of the first tag that the scheme does not allow where it stands (as
    :func:`allowed_transitions` defines it, start and end included), or None for a valid sequence."""
    previous: tuple[str, str] | None = (OUTSIDE, "")  # the start behaves like an O; None: a tag outside the scheme
    for position, tag in enumerate(tags):
        current = split_tag(tag, scheme)
        # Tags outside the scheme may stand anywhere and anything may follow them.
        if current is not None and previous is not None and not _allowed(previous, current, scheme):
            return position
        previous = current
    if scheme == "BIOES" and previous is not None and previous[0] in ("B", "I"):
        return len(tags) - 1
    return None


def _chunk_ends(prev: str, cur: str, prev_type: str, cur_type: str) -> bool:
    if prev in ("E", "S"):
        return True
    if prev in ("B", "I") and cur in ("B", "S", OUTSIDE):
        return True
    return prev != OUTSIDE and prev_type != cur_type


def _chunk_starts(prev: str, cur: str, prev_type: str, cur_type: str) -> bool:
    if cur in ("B", "S"):
        return True
    if cur in ("I", "E") and prev in (OUTSIDE, "E", "S"):
        return True
    return cur != OUTSIDE and prev_type != cur_type


def extract_spans(tags: Sequence[str], scheme: str) -> list[tuple[str, int, int]]:
    """Spans ``(type, start, end)`` (end inclusive) of one tag sequence, in order.

    The chunk rules are those of the CoNLL evaluation script (conlleval) as extended to BIOES by
    seqeval's default mode, so invalid sequences are read as those tools read them:

    - a chunk ends before O, B- or S-, after E- or S-, and wherever the type changes;
    - a chunk starts at B- or S-, at I- or E- after O, E- or S-, and wherever the type changes.

    So IOB2 ``O I-PER`` starts a chunk at the I-, ``B-PER I-LOC`` is two chunks, IOB1
    ``I-PER I-PER`` is one chunk and ``I-PER B-PER`` two, and a BIOES chunk that never sees its
    E- ends where the next rule says. Tags outside the scheme (see :func:`split_tag`) count as O.
    """
    check_scheme(scheme)
    spans = []
    start = None
    prev, prev_type = OUTSIDE, ""
    for i, tag in enumerate([*tags, OUTSIDE]):  # the trailing O closes a chunk still open
        cur, cur_type = split_tag(tag, scheme) or (OUTSIDE, "")
        if start is not None and _chunk_ends(prev, cur, prev_type, cur_type):
            spans.append((prev_type, start, i - 1))
            start = None
        if _chunk_starts(prev, cur, prev_type, cur_type):
            start = i
        prev, prev_type = cur, cur_type
    return spans


def _allowed(prev: tuple[str, str], cur: tuple[str, str], scheme: str) -> bool:
    """May ``cur`` follow ``prev`` (each ``(prefix, type)``; ``("O", "")`` before the first tag)?"""
    (p, p_type), (c, c_type) = prev, cur
    if scheme == "IOB2":
        return c != "I" or (p in ("B", "I") and p_type == c_type)
    if scheme == "IOB1":
        return c != "B" or (p in ("B", "I") and p_type == c_type)
    if p in ("B", "I"):  # BIOES: inside a span only I- or E- of its type may follow
        return c in ("I", "E") and p_type == c_type
    return c in (OUTSIDE, "B", "S")


def allowed_transitions(labels: Sequence[str], scheme: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Bool masks of the valid tag sequences: ``start`` (C,), ``transitions`` (C, C) [from, to], ``end`` (C,).

    - IOB2: I-X only after B-X or I-X, so never first.
    - IOB1: B-X only after B-X or I-X, so never first; I-X may follow anything.
    - BIOES: B-X and I-X are followed by I-X or E-X; O, E- and S- by O, B- or S-;
      a sequence starts with O, B- or S- and ends with O, E- or S-.

    A label outside the scheme (see :func:`split_tag`) is allowed everywhere.
    """
    check_scheme(scheme)
    parsed = [split_tag(label, scheme) for label in labels]
    num_tags = len(labels)
    start = torch.ones(num_tags, dtype=torch.bool)
    end = torch.ones(num_tags, dtype=torch.bool)
    transitions = torch.ones(num_tags, num_tags, dtype=torch.bool)
    for i, tag in enumerate(parsed):
        if tag is None:
            continue
        # The start/end of a sequence behaves like an O before/after it.
        start[i] = _allowed((OUTSIDE, ""), tag, scheme)
        end[i] = scheme != "BIOES" or tag[0] not in ("B", "I")
        for j, other in enumerate(parsed):
            if other is not None:
                transitions[i, j] = _allowed(tag, other, scheme)
    return start, transitions, end
