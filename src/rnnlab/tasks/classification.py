"""Sequence classification (N vs 1): backbone -> padding-aware pooling -> class logits.

TensorBoard gets the confusion matrix (an image, each class's F1 beside its name) after every
validation and the test; the test also writes a per-class report to ``test_report.json`` and
``test_report.txt`` in the run directory and to TensorBoard (``test/per_class``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics import MetricCollection
from torchmetrics.classification import MulticlassAccuracy

from rnnlab.batch import Batch
from rnnlab.errors import UserError
from rnnlab.heads import ClassificationHead
from rnnlab.tasks.base import STAGES, RecurrentTask
from rnnlab.tasks.confusion import ConfusionCounts, MacroF1
from rnnlab.tasks.media import confusion_figure, log_figure, log_text, markdown_table
from rnnlab.tasks.per_class import format_report, per_class_report, write_report


def class_weights_from(option: str | list[float] | None, counts: list[int]) -> torch.Tensor | None:
    """None, ``balanced`` (n / (C * count_c), as scikit-learn) or an explicit list, one weight per class."""
    if option is None:
        return None
    if option == "balanced":
        total = sum(counts)
        return torch.tensor([total / (len(counts) * max(c, 1)) for c in counts], dtype=torch.float)
    if isinstance(option, str) or len(option) != len(counts):
        raise UserError(
            f"model.class_weights must be null, 'balanced' or a list of {len(counts)} numbers (one per class); got {option!r}"
        )
    return torch.tensor([float(w) for w in option], dtype=torch.float)


class SequenceClassifier(RecurrentTask):
    """One label per sequence. Metrics: ``acc`` (micro) and ``f1_macro``; loss: cross-entropy.

    ``data_spec["labels"]["labels"]`` names the classes; ``class_weights`` weighs the loss.
    """

    metric_modes: ClassVar[dict[str, str]] = {"loss": "min", "acc": "max", "f1_macro": "max"}
    default_monitor: ClassVar[str] = "val/acc"
    data_task: ClassVar[str] = "classification"
    data_choices: ClassVar[str] = "data=bbc_news, text_csv, keywords or japanese_vowels"

    def __init__(
        self,
        data_spec: dict[str, Any],
        backbone: dict[str, Any],
        optimizer: dict[str, Any],
        scheduler: dict[str, Any] | None = None,
        pooling: str = "last",
        head_dropout: float = 0.0,
        class_weights: str | list[float] | None = None,
    ) -> None:
        super().__init__(data_spec, backbone, optimizer, scheduler)
        self.save_hyperparameters(logger=False)
        self.labels: list[str] = data_spec["labels"]["labels"]
        num_classes = len(self.labels)
        if num_classes < 2:
            raise UserError(f"classification needs at least 2 classes in the training data; found {self.labels}")
        self.head = ClassificationHead(
            self.backbone.output_size, num_classes, pooling, self.backbone.num_directions, head_dropout
        )
        weights = class_weights_from(class_weights, data_spec["label_counts"])
        self.register_buffer("class_weights", weights if weights is not None else torch.ones(num_classes))
        # No step may wait for the GPU. validate_args=False: labels come from the data's own label set;
        # torchmetrics' check of them (torch.unique) would sync. Macro F1 and the confusion matrix are
        # ours (rnnlab.tasks.confusion): torchmetrics counts them with torch.bincount, which syncs too.
        self.metrics = nn.ModuleDict(
            {
                f"{stage}_metrics": MetricCollection(
                    {
                        "acc": MulticlassAccuracy(num_classes, average="micro", validate_args=False),
                        "f1_macro": MacroF1(num_classes),
                    },
                    prefix=f"{stage}/",
                )
                for stage in STAGES
            }
        )
        self.confusion = nn.ModuleDict(
            {f"{stage}_confusion": ConfusionCounts(num_classes) for stage in ("val", "test")}
        )

    def forward(self, inputs: torch.Tensor, lengths: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """inputs (B, T) or (B, T, F), lengths (B,), mask (B, T) -> logits (B, C)."""
        outputs, _ = self.backbone(inputs, lengths)
        return self.head(outputs, mask)

    def loss(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """logits (B, C), targets (B,) -> the (class-weighted) mean cross-entropy."""
        return F.cross_entropy(logits, targets, weight=self.class_weights)

    def probe_loss(self, batch: Batch) -> torch.Tensor:
        return self.loss(self(batch.inputs, batch.on_host.lengths, batch.mask), batch.targets)

    def compute(self, batch: Batch, stage: str) -> torch.Tensor:
        logits = self(batch.inputs, batch.on_host.lengths, batch.mask)
        loss = self.loss(logits, batch.targets)
        metrics = self.metrics[f"{stage}_metrics"]
        predicted = logits.argmax(dim=-1)
        metrics.update(predicted, batch.targets)
        self.log_epoch_value(f"{stage}/metrics", metrics)
        if stage != "train":
            self.confusion[f"{stage}_confusion"].update(predicted, batch.targets)
        return loss

    def on_validation_epoch_end(self) -> None:
        self._log_confusion("val")

    def on_test_epoch_end(self) -> None:
        report = self._log_confusion("test")
        if report is None:
            return
        text = format_report("class", report)
        rows = [(label, *(f"{row[k]:.4f}" for k in ("precision", "recall", "f1")), str(row["support"])) for label, row in report.items()]
        log_text(self.loggers, "test/per_class", markdown_table(("class", "precision", "recall", "F1", "support"), rows), self.global_step)
        if self.trainer.is_global_zero:
            write_report(Path(self.trainer.default_root_dir), {"classes": report}, text)

    def _log_confusion(self, stage: str) -> dict[str, dict[str, float]] | None:
        """The stage's confusion matrix as a TensorBoard image (synced across DDP ranks); its per-class report."""
        confusion = self.confusion[f"{stage}_confusion"]
        if not confusion.update_called:
            return None
        counts = confusion.compute()
        confusion.reset()
        report = per_class_report(counts, self.labels)
        if not self.trainer.sanity_checking:
            f1 = [row["f1"] for row in report.values()]
            figure = confusion_figure(counts, self.labels, f1, title=f"{stage}, step {self.global_step}")
            log_figure(self.loggers, f"{stage}/confusion_matrix", figure, self.global_step)
        return report

    def predict_step(self, batch: Batch, batch_idx: int = 0) -> list[dict[str, Any]]:
        """One record per example: its dataset ``index``, ``label`` and ``probs`` per class."""
        probs = torch.softmax(self(batch.inputs, batch.on_host.lengths, batch.mask), dim=-1).cpu()
        records = []
        for index, row in zip(batch.on_host.extras["index"].tolist(), probs.tolist()):
            best = max(range(len(row)), key=row.__getitem__)
            records.append(
                {"index": index, "label": self.labels[best], "probs": {lab: round(p, 6) for lab, p in zip(self.labels, row)}}
            )
        return records
