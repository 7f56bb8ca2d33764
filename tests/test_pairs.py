"""The tsv_pairs reader: pairs in order, and one clear error per kind of bad line."""

from __future__ import annotations

from pathlib import Path

import pytest

from rnnlab.data.pairs import SequencePair, read_tsv_pairs
from rnnlab.errors import UserError


def write(path: Path, content: str | bytes) -> Path:
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_bytes(content.encode("utf-8"))
    return path


def test_pairs_in_file_order_with_their_origin(tmp_path: Path) -> None:
    path = write(tmp_path / "p.tsv", "cat\tK AE1 T\r\n\n  dog \tD AO1 G\nNaïve\tN AY0 IY1 V")
    assert read_tsv_pairs(path) == [
        SequencePair("cat", "K AE1 T", f"{path}:1"),
        SequencePair("dog", "D AO1 G", f"{path}:3"),
        SequencePair("Naïve", "N AY0 IY1 V", f"{path}:4"),
    ]


def test_a_utf8_bom_is_dropped(tmp_path: Path) -> None:
    assert read_tsv_pairs(write(tmp_path / "p.tsv", b"\xef\xbb\xbfab\tba\n"))[0].source == "ab"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("ab\tba\nno tab here\n", r"p\.tsv:2: expected source<TAB>target \(exactly one tab\); found no tab"),
        ("a\tb\tc\n", r"p\.tsv:1: expected source<TAB>target \(exactly one tab\); found 2 tabs"),
        ("ab\tba\n\t xy\n", r"p\.tsv:2: empty source"),
        ("ab\t  \n", r"p\.tsv:1: empty target"),
        ("\n \n", r"p\.tsv: no pairs"),
        (b"ab\tba\nc\xe9\tx\n", r"p\.tsv:2: not valid UTF-8"),
    ],
)
def test_bad_lines_name_the_file_and_line(tmp_path: Path, content: str | bytes, message: str) -> None:
    with pytest.raises(UserError, match=message):
        read_tsv_pairs(write(tmp_path / "p.tsv", content))


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(UserError, match=r"nope\.tsv: no such file"):
        read_tsv_pairs(tmp_path / "nope.tsv")
