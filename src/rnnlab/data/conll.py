"""Read tagged sentences in the CoNLL layout and raw sentences to tag, with file:line errors."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from rnnlab.data.readers import read_utf8, split_lines
from rnnlab.errors import data_error

# Spaces and tabs only: str.split() would also cut tokens at no-break and other Unicode spaces.
_COLUMNS = re.compile(r"[ \t]+")


@dataclass(frozen=True)
class TaggedSentence:
    """One sentence: its tokens, their tags (None when unlabelled) and where it starts ("path:line")."""

    tokens: tuple[str, ...]
    tags: tuple[str, ...] | None
    source: str


def read_conll_file(
    path: str | Path,
    token_column: int = 0,
    tag_column: int | None = -1,
    require_tags: bool = True,
) -> list[TaggedSentence]:
    """Tagged sentences from a CoNLL-style file.

    One token per line in whitespace-separated columns (spaces, tabs or a mix); a blank or
    whitespace-only line ends a sentence (any number of them, trailing ones or none); lines
    starting with ``-DOCSTART-`` are skipped. Windows line endings and a UTF-8 BOM are accepted.
    Columns count from 0; negative ones count from the end of the line. Every line of a sentence
    must have as many columns as its first line. ``tag_column=None`` or ``require_tags=False``
    reads tokens only (``tags=None``). Every problem raises a ``UserError`` naming the file and,
    where it applies, the line.
    """
    tag_col = tag_column if require_tags else None
    sentences: list[TaggedSentence] = []
    tokens: list[str] = []
    tags: list[str] = []
    start = width = 0  # first line of the current sentence and its number of columns

    def close() -> None:
        if tokens:
            labels = tuple(tags) if tag_col is not None else None
            sentences.append(TaggedSentence(tuple(tokens), labels, f"{path}:{start}"))
            tokens.clear()
            tags.clear()

    for number, line in split_lines(read_utf8(path)):
        stripped = line.strip(" \t")
        if not stripped or stripped.startswith("-DOCSTART-"):
            close()
            continue
        columns = _COLUMNS.split(stripped)
        found = f"the line has {len(columns)} column(s)"
        token_index = _index(columns, token_column)
        if token_index is None:
            raise data_error(path, number, f"{found}, data.token_column={token_column} needs more")
        if tag_col is not None:
            tag_index = _index(columns, tag_col)
            if tag_index is None:
                raise data_error(path, number, f"missing tag: {found}, data.tag_column={tag_col} needs more")
            if tag_index == token_index:
                raise data_error(path, number, f"missing tag: {found} and data.tag_column={tag_col} is the token's")
            tags.append(columns[tag_index])
        if not tokens:
            start, width = number, len(columns)
        elif len(columns) != width:
            raise data_error(path, number, f"malformed line: {len(columns)} columns where the sentence's line {start} has {width}")
        tokens.append(columns[token_index])
    close()
    if not sentences:
        raise data_error(path, None, "no sentences: expected one token per line and a blank line between sentences")
    return sentences


def read_token_lines(path: str | Path) -> list[tuple[int, list[str]]]:
    """Prediction input, one sentence per line, tokens separated by spaces or tabs: [(1-based line, tokens)].

    Blank lines are skipped; a file without any sentence is an error.
    """
    stripped = ((number, line.strip(" \t")) for number, line in split_lines(read_utf8(path)))
    lines = [(number, _COLUMNS.split(line)) for number, line in stripped if line]
    if not lines:
        raise data_error(path, None, "no sentences: expected one sentence per line, tokens separated by spaces")
    return lines


def _index(columns: list[str], column: int) -> int | None:
    """``column`` as an index into ``columns`` (negative ones count from the end); None when out of range."""
    return column % len(columns) if -len(columns) <= column < len(columns) else None
