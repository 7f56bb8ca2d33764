"""A :class:`~rnnlab.reports.runs.Report` as Markdown, CSV and LaTeX.

One row per group; per metric the mean ± sample std over the group's counted runs, and the best
single run (the column is named ``max`` or ``min``, the metric's direction). The best group per
metric is marked: bold in Markdown, ``\\textbf`` in LaTeX, ``*`` in the CSV's ``best_group`` column.
A cell whose metric some counted runs lack says over how many runs it is, ``(n=2)``.
"""

from __future__ import annotations

import csv
import re
from pathlib import Path

from rnnlab.markdown import markdown_table
from rnnlab.reports.runs import Group, Report, Stats
from rnnlab.sweeps.summary import format_value

NO_VALUE = "–"


def header(report: Report) -> list[str]:
    """Column names of the Markdown and LaTeX tables."""
    columns = ["group", "n"]
    for metric in report.metrics:
        columns += [metric, f"{metric} {report.modes[metric]}"]
    return columns


def cells(report: Report, group: Group, plus_minus: str = "±", bold: str = "**{}**") -> list[str]:
    """One table row as text: ``plus_minus`` joins mean and std, ``bold`` formats the best group's cell."""
    row = [group.label, str(len(group.counted))]
    for metric in report.metrics:
        stats = report.stats(group, metric)
        if stats is None:
            row += [NO_VALUE, NO_VALUE]
            continue
        text = format_mean(stats, plus_minus)
        if stats.n < len(group.counted):
            text += f" (n={stats.n})"
        if group in report.best[metric]:
            text = bold.format(text)
        row += [text, format_value(stats.best)]
    return row


def format_mean(stats: Stats, plus_minus: str) -> str:
    """``0.9123 ± 0.004``; the mean alone for a single run (no std)."""
    std = stats.std
    return format_value(stats.mean) if std is None else f"{format_value(stats.mean)} {plus_minus} {format_value(std)}"


def description(report: Report) -> list[str]:
    """Lines above the table: what was counted, how the cells are made, shared and pooled overrides."""
    counted = sum(len(group.counted) for group in report.groups)
    lines = [
        f"{len(report.runs)} runs in {len(report.groups)} groups: {counted} completed (counted), "
        f"{len(report.runs) - counted} did not complete (left out).",
        "Cells: mean ± sample std (ddof=1) over a group's runs; bold: the best group; max/min: the best run.",
    ]
    if report.group_by is not None:
        lines.append(f"Grouped by: {', '.join(report.group_by)}.")
    if report.common:
        lines.append(f"Overrides of every run: {' '.join(report.common)}")
    if report.pooled:
        lines.append(f"Pooled within groups (these vary inside a group): {', '.join(report.pooled)}")
    return lines


def markdown(report: Report) -> str:
    """The whole report: description, the table of groups, then the runs left out."""
    lines = [f"# Results: {report.root}", "", *(f"{line}  " for line in description(report)), ""]
    lines.append(markdown_table(header(report), [cells(report, group) for group in report.groups], numeric_from=1))
    left_out = report.left_out()
    if left_out:
        lines += ["", "## Runs left out", ""]
        lines.append(markdown_table(["run", "group", "status", "reason"], [[r.run, r.group, r.status, r.reason] for r in left_out]))
    return "\n".join(lines) + "\n"


def csv_rows(report: Report) -> list[dict[str, str]]:
    """One row per group, numbers at full precision; ``overrides`` are the group's full grouping overrides.

    Per metric: ``<m> mean``, ``<m> std`` (empty for one run), ``<m> n``, ``<m> max|min`` (the best
    run) and ``<m> best_group`` (``*`` for the best group).
    """
    rows = []
    for group in report.groups:
        row = {"group": group.label, "overrides": " ".join(group.key), "n": str(len(group.counted))}
        for metric in report.metrics:
            stats = report.stats(group, metric)
            std = stats.std if stats else None
            row[f"{metric} mean"] = repr(stats.mean) if stats else ""
            row[f"{metric} std"] = repr(std) if std is not None else ""
            row[f"{metric} n"] = str(stats.n) if stats else "0"
            row[f"{metric} {report.modes[metric]}"] = repr(stats.best) if stats else ""
            row[f"{metric} best_group"] = "*" if group in report.best[metric] else ""
        rows.append(row)
    return rows


def write_csv(report: Report, path: Path) -> None:
    rows = csv_rows(report)
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


LATEX_SPECIAL = re.compile(r"([\\&%$#_{}~^])")
LATEX_REPLACEMENTS = {"\\": r"\textbackslash{}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}


def latex_escape(text: str) -> str:
    """``text`` safe in LaTeX text mode (``model/backbone=lstm data.hidden_size=64`` keeps its look)."""
    return LATEX_SPECIAL.sub(lambda match: LATEX_REPLACEMENTS.get(match.group(1), "\\" + match.group(1)), text)


def latex(report: Report) -> str:
    """A booktabs ``tabular`` (``\\usepackage{booktabs}``) to ``\\input`` into a table float."""
    columns = header(report)
    lines = [f"% rnnlab-report {latex_escape(str(report.root))}"]
    lines += [f"% {line}" for line in description(report)]
    lines += [r"\begin{tabular}{l" + "r" * (len(columns) - 1) + "}", r"\toprule"]
    lines.append(" & ".join(latex_escape(column) for column in columns) + r" \\")
    lines.append(r"\midrule")
    for group in report.groups:
        row = cells(report, group, plus_minus="$\\pm$", bold="\\textbf{{{}}}")
        row = [latex_escape(row[0]), *(cell.replace(NO_VALUE, "--").replace("(n=", "($n$=") for cell in row[1:])]
        lines.append(" & ".join(row) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}"]
    return "\n".join(lines) + "\n"
