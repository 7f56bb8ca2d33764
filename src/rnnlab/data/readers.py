"""Read labelled text files (csv, tsv, jsonl) and raw prediction input, with file:line errors."""

from __future__ import annotations

import codecs
import csv
import io
import json
from dataclasses import dataclass
from pathlib import Path
from collections.abc import Iterator
from typing import Any

from rnnlab.errors import check_choice, data_error

FORMATS: tuple[str, ...] = ("csv", "tsv", "jsonl")


@dataclass(frozen=True)
class TextExample:
    """One text with its label (None when unlabelled) and where it came from ("path:line")."""

    text: str
    label: str | None
    source: str


def read_text_classification_file(
    path: str | Path,
    format: str | None = None,
    text_field: str = "text",
    label_field: str = "label",
    require_labels: bool = True,
) -> list[TextExample]:
    """Read (text, label) examples from a csv, tsv or jsonl file.

    csv/tsv: a header row names the columns (extra columns are ignored, surrounding spaces in
    names too); tsv follows the same quoting rules as csv, so quoted fields may span lines and
    ``source`` names the line where the record starts. Blank lines are skipped.
    jsonl: one JSON object per line; blank lines are skipped.
    ``format=None`` takes the format from the extension. Text is kept as is; labels are turned
    into strings (JSON 1 -> "1") with surrounding whitespace removed. Without ``require_labels``
    a missing label column/field or an empty label gives ``label=None``.
    Every problem raises a ``UserError`` naming the file and, where it applies, the line.
    """
    if format is not None:
        check_choice("data.format", format, FORMATS)
    content = read_utf8(path)
    if format is None:
        format = _format_from_extension(path)
    if format == "jsonl":
        examples = _read_jsonl(path, content, text_field, label_field, require_labels)
    else:
        delimiter = "\t" if format == "tsv" else ","
        examples = _read_delimited(path, content, delimiter, text_field, label_field, require_labels)
    if not examples:
        raise data_error(path, None, "no data rows")
    return examples


def read_text_lines(path: str | Path) -> list[tuple[int, str]]:
    """Prediction input, one text per line: [(1-based line number, line without its newline)].

    Blank or whitespace-only lines are errors (each line must be one input), as is a file with no lines.
    """
    content = read_utf8(path)
    lines = split_lines(content)
    if not lines:
        raise data_error(path, None, "empty file: expected one text per line")
    for number, line in lines:
        if not line.strip():
            raise data_error(path, number, "empty input: every line must hold one text")
    return lines


def read_utf8(path: str | Path) -> str:
    """The file's text (a UTF-8 BOM is dropped), or a UserError naming the file and the bad line."""
    file = Path(path)
    if not file.exists():
        raise data_error(path, None, "no such file")
    if file.is_dir():
        raise data_error(path, None, "is a directory, expected a file")
    try:
        raw = file.read_bytes()
    except OSError as e:
        raise data_error(path, None, f"cannot read the file: {e.strerror}") from None
    if raw.startswith(codecs.BOM_UTF8):
        raw = raw[len(codecs.BOM_UTF8) :]
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw.count(b"\n", 0, e.start) + 1
        bad = raw[e.start : e.start + 1].hex()
        raise data_error(path, line, f"not valid UTF-8 (byte 0x{bad}); the file must be UTF-8 encoded") from None


def _format_from_extension(path: str | Path) -> str:
    suffix = Path(path).suffix.lower()
    if suffix.lstrip(".") in FORMATS:
        return suffix.lstrip(".")
    raise data_error(
        path,
        None,
        f"cannot tell the format from the extension {suffix!r}: use .csv, .tsv or .jsonl, "
        f"or set data.format to one of {', '.join(FORMATS)}",
    )


def split_lines(content: str) -> list[tuple[int, str]]:
    """Numbered lines without their "\\n" or "\\r\\n"; splits on "\\n" only, since JSON strings may hold U+2028."""
    if not content:
        return []
    lines = content.split("\n")
    if lines[-1] == "":
        lines.pop()
    return [(i, line.removesuffix("\r")) for i, line in enumerate(lines, start=1)]


def csv_records(path: str | Path, content: str, delimiter: str = ",") -> Iterator[tuple[int, list[str]]]:
    """The non-blank records of csv / tsv ``content``, each with the line it starts on (quoted
    fields may span lines): first the header, its names stripped, then the data rows, each with as
    many fields as the header. Malformed quoting, a row of another width and an empty text are
    UserErrors naming the file and line."""
    fmt = "tsv" if delimiter == "\t" else "csv"
    reader = csv.reader(io.StringIO(content, newline=""), delimiter=delimiter)
    header: list[str] | None = None
    end = 0  # lines consumed so far; a record starts on the line after the previous one ended
    try:
        for row in reader:
            start, end = end + 1, reader.line_num
            if not row:
                continue
            if header is None:
                header = [name.strip() for name in row]
                yield start, header
                continue
            if len(row) != len(header):
                raise data_error(path, start, f"row has {len(row)} columns, the header has {len(header)}")
            yield start, row
    except csv.Error as e:
        raise data_error(path, reader.line_num, f"malformed {fmt}: {e}") from None
    if header is None:
        raise data_error(path, None, "empty file: expected a header row naming the columns")


def column_index(path: str | Path, line: int, header: list[str], field: str, config_key: str) -> int:
    """The position of column ``field`` in ``header``; a UserError naming ``config_key`` when absent."""
    if field not in header:
        found = ", ".join(repr(name) for name in header)
        raise data_error(path, line, f"the header has no column {field!r} (set {config_key}); columns found: {found}")
    return header.index(field)


def _read_delimited(
    path: str | Path,
    content: str,
    delimiter: str,
    text_field: str,
    label_field: str,
    require_labels: bool,
) -> list[TextExample]:
    records = csv_records(path, content, delimiter)
    header_line, header = next(records)
    text_col = column_index(path, header_line, header, text_field, "data.text_field")
    label_col = None
    if label_field in header or require_labels:
        label_col = column_index(path, header_line, header, label_field, "data.label_field")
    examples: list[TextExample] = []
    for start, row in records:
        label = row[label_col].strip() if label_col is not None else ""
        examples.append(_example(path, start, row[text_col], label or None, text_field, label_field, require_labels))
    return examples


def _read_jsonl(
    path: str | Path,
    content: str,
    text_field: str,
    label_field: str,
    require_labels: bool,
) -> list[TextExample]:
    examples: list[TextExample] = []
    for number, line in split_lines(content):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as e:
            raise data_error(path, number, f"malformed JSON: {e.msg} (column {e.colno})") from None
        if not isinstance(record, dict):
            raise data_error(path, number, f"expected a JSON object, got {type(record).__name__}")
        if text_field not in record:
            found = ", ".join(repr(key) for key in record)
            raise data_error(path, number, f"no field {text_field!r} (set data.text_field); fields found: {found}")
        text = record[text_field]
        if text is not None and not isinstance(text, str):
            raise data_error(path, number, f"field {text_field!r} must be a string, got {type(text).__name__}")
        if require_labels and label_field not in record:
            found = ", ".join(repr(key) for key in record)
            raise data_error(path, number, f"no field {label_field!r} (set data.label_field); fields found: {found}")
        label = _json_label(path, number, record.get(label_field), label_field)
        examples.append(_example(path, number, text or "", label, text_field, label_field, require_labels))
    return examples


def _json_label(path: str | Path, line: int, value: Any, label_field: str) -> str | None:
    """A JSON label as a string (1 -> "1"); None for null or an empty string."""
    if value is None:
        return None
    if isinstance(value, (dict, list)):
        raise data_error(path, line, f"field {label_field!r} must be a string or a number, got {type(value).__name__}")
    return str(value).strip() or None


def _example(
    path: str | Path,
    line: int,
    text: str,
    label: str | None,
    text_field: str,
    label_field: str,
    require_labels: bool,
) -> TextExample:
    if not text.strip():
        raise data_error(path, line, f"empty text in {text_field!r}")
    if require_labels and label is None:
        raise data_error(path, line, f"missing or empty label in {label_field!r}")
    return TextExample(text=text, label=label, source=f"{path}:{line}")

