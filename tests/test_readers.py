from __future__ import annotations

import json
from pathlib import Path

import pytest

from rnnlab.data.readers import TextExample, read_text_classification_file, read_text_lines
from rnnlab.errors import UserError


def _write(path: Path, text: str) -> Path:
    path.write_bytes(text.encode("utf-8"))
    return path


def _error(path: Path, line: int | None, *fragments: str, **kwargs: object) -> str:
    """Read ``path`` expecting a UserError at ``path:line`` containing ``fragments``."""
    with pytest.raises(UserError) as info:
        read_text_classification_file(path, **kwargs)  # type: ignore[arg-type]
    message = str(info.value)
    where = f"{path}:{line}:" if line is not None else f"{path}:"
    assert message.startswith(where), message
    for fragment in fragments:
        assert fragment in message, message
    return message


# --- happy paths ---------------------------------------------------------------------------------


def test_csv_with_extra_columns_quoted_multiline_and_blank_lines(tmp_path: Path) -> None:
    path = _write(
        tmp_path / "train.csv",
        'id,text,label\n1,"Hello, world",pos\n\n2,"two\nlines",neg\n3, spaced ,pos\n',
    )
    examples = read_text_classification_file(path)
    assert examples == [
        TextExample("Hello, world", "pos", f"{path}:2"),
        TextExample("two\nlines", "neg", f"{path}:4"),
        TextExample(" spaced ", "pos", f"{path}:6"),
    ]


def test_csv_with_bom_and_crlf(tmp_path: Path) -> None:
    path = tmp_path / "a.csv"
    path.write_bytes(b"\xef\xbb\xbftext,label\r\nna\xc3\xafve,1\r\n")
    assert read_text_classification_file(path) == [TextExample("naïve", "1", f"{path}:2")]


def test_tsv_custom_fields(tmp_path: Path) -> None:
    path = _write(tmp_path / "d.tsv", "sentence\tgold\tx\nA, b\tyes\t0\nc\tno\t1\n")
    examples = read_text_classification_file(path, text_field="sentence", label_field="gold")
    assert [(e.text, e.label, e.source) for e in examples] == [
        ("A, b", "yes", f"{path}:2"),
        ("c", "no", f"{path}:3"),
    ]


def test_jsonl_with_blank_lines_and_int_labels(tmp_path: Path) -> None:
    lines = [json.dumps({"text": "good", "label": 1}), "", json.dumps({"text": "bad\u2028x", "label": "0", "id": 9})]
    path = _write(tmp_path / "d.jsonl", "\n".join(lines) + "\n")
    assert read_text_classification_file(path) == [
        TextExample("good", "1", f"{path}:1"),
        TextExample("bad\u2028x", "0", f"{path}:3"),
    ]


def test_explicit_format_overrides_extension(tmp_path: Path) -> None:
    path = _write(tmp_path / "data.txt", "text\tlabel\nx\ty\n")
    assert read_text_classification_file(path, format="tsv") == [TextExample("x", "y", f"{path}:2")]


def test_labels_optional(tmp_path: Path) -> None:
    csv_path = _write(tmp_path / "u.csv", "text\nhello\n")
    assert read_text_classification_file(csv_path, require_labels=False) == [
        TextExample("hello", None, f"{csv_path}:2")
    ]
    jsonl_path = _write(tmp_path / "u.jsonl", '{"text": "a"}\n{"text": "b", "label": ""}\n')
    assert [e.label for e in read_text_classification_file(jsonl_path, require_labels=False)] == [None, None]


# --- errors --------------------------------------------------------------------------------------


def test_missing_file_and_directory(tmp_path: Path) -> None:
    _error(tmp_path / "nope.csv", None, "no such file")
    folder = tmp_path / "dir.csv"
    folder.mkdir()
    _error(folder, None, "directory")


def test_bad_format(tmp_path: Path) -> None:
    path = _write(tmp_path / "data.txt", "text,label\nx,y\n")
    _error(path, None, "data.format", ".csv")
    with pytest.raises(UserError, match="data.format.*csv, tsv, jsonl"):
        read_text_classification_file(path, format="xml")


def test_invalid_utf8_names_line(tmp_path: Path) -> None:
    path = tmp_path / "latin.csv"
    path.write_bytes("text,label\nok,a\ncaf\xe9,b\n".encode("latin-1"))
    _error(path, 3, "UTF-8")


def test_empty_file_and_no_data_rows(tmp_path: Path) -> None:
    _error(_write(tmp_path / "e.csv", ""), None, "empty file")
    _error(_write(tmp_path / "h.csv", "text,label\n"), None, "no data rows")
    _error(_write(tmp_path / "e.jsonl", "\n  \n"), None, "no data rows")


def test_header_lacks_fields(tmp_path: Path) -> None:
    path = _write(tmp_path / "d.csv", "\nsentence,label\nx,y\n")
    _error(path, 2, "'text'", "data.text_field", "'sentence', 'label'")
    path = _write(tmp_path / "d.tsv", "text\tgold\nx\ty\n")
    _error(path, 1, "'label'", "data.label_field", "'gold'")


def test_empty_text(tmp_path: Path) -> None:
    _error(_write(tmp_path / "d.csv", 'text,label\nok,a\n"  ",b\n'), 3, "empty text")
    _error(_write(tmp_path / "d.jsonl", '{"text": "ok", "label": 1}\n{"text": null, "label": 1}\n'), 2, "empty text")
    _error(_write(tmp_path / "n.jsonl", '{"text": 5, "label": 1}\n'), 1, "must be a string")


def test_missing_or_empty_label(tmp_path: Path) -> None:
    _error(_write(tmp_path / "d.csv", "text,label\nok,a\nno label, \n"), 3, "label")
    _error(_write(tmp_path / "d.jsonl", '{"text": "ok", "label": 1}\n{"text": "x"}\n'), 2, "'label'", "data.label_field")
    _error(_write(tmp_path / "e.jsonl", '{"text": "x", "label": ""}\n'), 1, "empty label")


def test_malformed_json_and_non_object(tmp_path: Path) -> None:
    _error(_write(tmp_path / "d.jsonl", '{"text": "a", "label": 1}\n\n{"text": "b",\n'), 3, "malformed JSON")
    _error(_write(tmp_path / "l.jsonl", '{"text": "a", "label": 1}\n["b", 1]\n'), 2, "JSON object", "list")


def test_row_column_count_mismatch(tmp_path: Path) -> None:
    _error(_write(tmp_path / "d.csv", 'text,label\n"multi\nline",a\nshort\n'), 4, "1 columns", "header has 2")
    _error(_write(tmp_path / "d.tsv", "text\tlabel\nx\n"), 2, "1 columns")


def test_multiline_record_reports_its_first_line(tmp_path: Path) -> None:
    _error(_write(tmp_path / "d.csv", 'text,label\nok,a\n"line one\n\nline three",\n'), 3, "label")


# --- read_text_lines -----------------------------------------------------------------------------


def test_read_text_lines(tmp_path: Path) -> None:
    path = _write(tmp_path / "in.txt", "first line\r\n second, with spaces \nlast")
    assert read_text_lines(path) == [(1, "first line"), (2, " second, with spaces "), (3, "last")]


def test_read_text_lines_errors(tmp_path: Path) -> None:
    with pytest.raises(UserError, match=r"in\.txt:2: empty input"):
        read_text_lines(_write(tmp_path / "in.txt", "a\n  \nb\n"))
    with pytest.raises(UserError, match=r"none\.txt: no such file"):
        read_text_lines(tmp_path / "none.txt")
    with pytest.raises(UserError, match=r"empty\.txt: empty file"):
        read_text_lines(_write(tmp_path / "empty.txt", ""))
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"ok\nok\n\xff\xfe\n")
    with pytest.raises(UserError, match=r"bad\.txt:3: .*UTF-8"):
        read_text_lines(bad)
