"""Markdown tables: the one writer for TensorBoard text, sweep summaries and results reports."""

from __future__ import annotations

from collections.abc import Sequence


def _cell(text: str) -> str:
    # Backslashes first, so that the one escaping a pipe is not itself escaped; <br> is the only
    # line break a table cell can hold (TensorBoard's sanitizer keeps it).
    text = text.replace("\\", "\\\\").replace("|", "\\|")
    return text.replace("\r\n", "<br>").replace("\n", "<br>").replace("\r", "<br>")


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]], numeric_from: int | None = None) -> str:
    """A Markdown table; columns from index ``numeric_from`` on are right-aligned. Cells stay
    Markdown (``**bold**`` works), but pipes and backslashes are literal and line breaks become
    ``<br>``, so no cell text can break the table's layout."""
    rule = ["---:" if numeric_from is not None and index >= numeric_from else "---" for index in range(len(header))]
    lines = [f"| {' | '.join(map(_cell, header))} |", f"|{'|'.join(rule)}|"]
    for row in rows:
        if len(row) != len(header):
            raise ValueError(f"a table row has {len(row)} cells, the header {len(header)}: {row!r}")
        lines.append(f"| {' | '.join(map(_cell, row))} |")
    return "\n".join(lines)
