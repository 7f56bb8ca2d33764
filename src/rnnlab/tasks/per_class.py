"""Per-class precision, recall and F1 from a confusion matrix, and the test report files.

Shared by the classifier (one label per sequence) and the tagger (one tag per token).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch


def per_class_report(confusion: torch.Tensor, labels: list[str]) -> dict[str, dict[str, float]]:
    """Per-class precision / recall / f1 / support from a confusion matrix (C, C) [gold, predicted]."""
    confusion = confusion.double()
    true_positive = confusion.diag()
    predicted, gold = confusion.sum(0), confusion.sum(1)
    report = {}
    for i, label in enumerate(labels):
        precision = float(true_positive[i] / predicted[i]) if predicted[i] else 0.0
        recall = float(true_positive[i] / gold[i]) if gold[i] else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        report[label] = {"precision": precision, "recall": recall, "f1": f1, "support": int(gold[i])}
    return report


def format_report(title: str, report: dict[str, dict[str, float]]) -> str:
    """A fixed-width text table of a report."""
    width = max([len(title), *map(len, report)])
    lines = [f"{title:<{width}}  precision  recall      f1  support"]
    for name, row in report.items():
        lines.append(f"{name:<{width}}  {row['precision']:9.4f}  {row['recall']:6.4f}  {row['f1']:6.4f}  {int(row['support']):7d}")
    return "\n".join(lines)


def write_report(run_dir: Path, report: dict[str, Any], text: str) -> None:
    """``test_report.json`` (``report``) and ``test_report.txt`` (``text``) in ``run_dir``."""
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "test_report.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    (run_dir / "test_report.txt").write_text(text + "\n", encoding="utf-8")
