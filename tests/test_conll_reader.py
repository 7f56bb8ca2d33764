from __future__ import annotations

import re
from pathlib import Path

import pytest

from rnnlab.data.conll import TaggedSentence, read_conll_file, read_token_lines
from rnnlab.errors import UserError


def _write(path: Path, text: str) -> Path:
    path.write_bytes(text.encode("utf-8"))
    return path


def _error(path: Path, line: int | None, *fragments: str, **kwargs: object) -> str:
    """Read ``path`` expecting a UserError at ``path:line`` containing ``fragments``."""
    with pytest.raises(UserError) as info:
        read_conll_file(path, **kwargs)  # type: ignore[arg-type]
    message = str(info.value)
    assert message.startswith(f"{path}:{line}:" if line is not None else f"{path}:"), message
    for fragment in fragments:
        assert fragment in message, message
    return message


def _pairs(sentences: list[TaggedSentence]) -> list[tuple[tuple[str, ...], tuple[str, ...] | None]]:
    return [(s.tokens, s.tags) for s in sentences]


TWO_SENTENCES = [(("EU", "rejects", "German"), ("B-ORG", "O", "B-MISC")), (("Peter",), ("B-PER",))]


# --- layout -------------------------------------------------------------------------------------


def test_basic_file_with_sources(tmp_path: Path) -> None:
    path = _write(tmp_path / "a.txt", "EU B-ORG\nrejects O\nGerman B-MISC\n\nPeter B-PER\n")
    sentences = read_conll_file(path)
    assert _pairs(sentences) == TWO_SENTENCES
    assert [s.source for s in sentences] == [f"{path}:1", f"{path}:5"]


@pytest.mark.parametrize(
    "text",
    [
        "EU B-ORG\nrejects O\nGerman B-MISC\n\nPeter B-PER",  # no newline at the end
        "EU B-ORG\nrejects O\nGerman B-MISC\n\nPeter B-PER\n\n\n\n",  # trailing blank lines
        "\n\nEU B-ORG\nrejects O\nGerman B-MISC\n\n\n \t \n\nPeter B-PER\n",  # leading, repeated, whitespace-only
        "EU B-ORG\r\nrejects O\r\nGerman B-MISC\r\n\r\nPeter B-PER\r\n",  # Windows line endings
        "\ufeffEU B-ORG\nrejects O\nGerman B-MISC\n\nPeter B-PER\n",  # UTF-8 BOM
        "EU\tB-ORG\nrejects \t O\n  German\t\tB-MISC  \n\nPeter\tB-PER\t\n",  # tabs, spaces, a mix
    ],
)
def test_layout_variants_read_the_same(tmp_path: Path, text: str) -> None:
    assert _pairs(read_conll_file(_write(tmp_path / "a.txt", text))) == TWO_SENTENCES


def test_docstart_lines_are_skipped(tmp_path: Path) -> None:
    text = "-DOCSTART- -X- -X- O\n\nEU NNP B-NP B-ORG\nrejects VBZ B-VP O\n\n-DOCSTART- -X- -X- O\n\nPeter NNP B-NP B-PER\n\n"
    sentences = read_conll_file(_write(tmp_path / "conll2003.txt", text))
    assert _pairs(sentences) == [(("EU", "rejects"), ("B-ORG", "O")), (("Peter",), ("B-PER",))]
    assert [s.source.rsplit(":", 1)[1] for s in sentences] == ["3", "8"]


def test_only_docstart_is_no_sentences(tmp_path: Path) -> None:
    _error(_write(tmp_path / "a.txt", "-DOCSTART- O\n\n\n"), None, "no sentences")


def test_custom_and_negative_columns(tmp_path: Path) -> None:
    path = _write(tmp_path / "a.txt", "1 EU NNP B-ORG\n2 rejects VBZ O\n")
    assert _pairs(read_conll_file(path, token_column=1, tag_column=2)) == [(("EU", "rejects"), ("NNP", "VBZ"))]
    assert _pairs(read_conll_file(path, token_column=-3, tag_column=-1)) == [(("EU", "rejects"), ("B-ORG", "O"))]
    assert _pairs(read_conll_file(path, token_column=1, tag_column=0)) == [(("EU", "rejects"), ("1", "2"))]


def test_unlabelled_reading(tmp_path: Path) -> None:
    path = _write(tmp_path / "a.txt", "EU B-ORG\nrejects O\n\nPeter B-PER\n")
    expected = [(("EU", "rejects"), None), (("Peter",), None)]
    assert _pairs(read_conll_file(path, tag_column=None)) == expected
    assert _pairs(read_conll_file(path, require_tags=False)) == expected
    tokens_only = _write(tmp_path / "b.txt", "EU\nrejects\n\nPeter\n")
    assert _pairs(read_conll_file(tokens_only, tag_column=None)) == expected


def test_tokens_keep_non_ascii_and_no_break_spaces(tmp_path: Path) -> None:
    path = _write(tmp_path / "a.txt", "naïve\u00a0café NN\n")
    assert _pairs(read_conll_file(path)) == [(("naïve\u00a0café",), ("NN",))]


# --- errors -------------------------------------------------------------------------------------


def test_malformed_line_names_file_and_line(tmp_path: Path) -> None:
    path = _write(tmp_path / "a.txt", "EU NNP B-ORG\nrejects VBZ O\n\nPeter NNP B-PER\nsaid VBD O extra\n")
    _error(path, 5, "malformed line", "4 columns", "line 4 has 3")


def test_missing_tag_with_one_column(tmp_path: Path) -> None:
    path = _write(tmp_path / "a.txt", "EU B-ORG\nrejects\nGerman B-MISC\n")
    _error(path, 2, "missing tag", "1 column(s)")


def test_missing_tag_column_out_of_range(tmp_path: Path) -> None:
    path = _write(tmp_path / "a.txt", "EU B-ORG\n")
    _error(path, 1, "missing tag", "data.tag_column=3", tag_column=3)


def test_token_column_out_of_range(tmp_path: Path) -> None:
    path = _write(tmp_path / "a.txt", "\nEU B-ORG\n")
    _error(path, 2, "data.token_column=-3", token_column=-3, tag_column=None)


def test_not_utf8_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "latin1.txt"
    path.write_bytes("EU B-ORG\n\ncaf\u00e9 O\n".encode("latin-1"))
    _error(path, 3, "not valid UTF-8", "0xe9")


@pytest.mark.parametrize("text", ["", "\n\n", " \t\n\r\n"])
def test_empty_file(tmp_path: Path, text: str) -> None:
    _error(_write(tmp_path / "empty.txt", text), None, "no sentences")


def test_missing_file(tmp_path: Path) -> None:
    _error(tmp_path / "nope.txt", None, "no such file")


# --- prediction input ---------------------------------------------------------------------------


def test_read_token_lines(tmp_path: Path) -> None:
    path = _write(tmp_path / "in.txt", "\ufeffThe cat  sat\r\n\n   \nOn\tthe mat .\n")
    assert read_token_lines(path) == [(1, ["The", "cat", "sat"]), (4, ["On", "the", "mat", "."])]


def test_read_token_lines_errors(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="no sentences"):
        read_token_lines(_write(tmp_path / "blank.txt", "\n \n"))
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"ok\n\xff\n")
    with pytest.raises(UserError, match=rf"^{re.escape(str(bad))}:2: not valid UTF-8"):
        read_token_lines(bad)
