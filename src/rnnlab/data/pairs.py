"""Read source/target pairs (N vs M data, e.g. grapheme-to-phoneme) from tab-separated files.

``data=tsv_pairs`` (CONTRACT.md): one ``source<TAB>target`` pair per line, UTF-8. Blank lines are
skipped; every other problem is a UserError naming the file and line.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from rnnlab.data.readers import read_utf8, split_lines
from rnnlab.errors import data_error


@dataclass(frozen=True)
class SequencePair:
    """One source text, its target text, and where the pair came from ("path:line")."""

    source: str
    target: str
    origin: str


def read_tsv_pairs(path: str | Path) -> list[SequencePair]:
    """``source<TAB>target`` per line -> pairs in file order; both sides have surrounding spaces removed.

    A line without a tab, with more than one, or with an empty side is an error, as is a file
    (non-UTF-8, missing, a directory) that cannot be read or holds no pairs.
    """
    pairs = []
    for number, line in split_lines(read_utf8(path)):
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) != 2:
            found = "no tab" if len(fields) == 1 else f"{len(fields) - 1} tabs"
            raise data_error(path, number, f"expected source<TAB>target (exactly one tab); found {found}")
        source, target = (field.strip() for field in fields)
        for side, text in (("source", source), ("target", target)):
            if not text:
                raise data_error(path, number, f"empty {side}: both sides of a pair need text")
        pairs.append(SequencePair(source, target, f"{path}:{number}"))
    if not pairs:
        raise data_error(path, None, "no pairs: expected one source<TAB>target pair per line")
    return pairs
