"""Sequence classification (N vs 1): backbone -> padding-aware pooling -> class logits."""

from __future__ import annotations

from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics import MetricCollection
from torchmetrics.classification import MulticlassAccuracy, MulticlassF1Score

from rnnlab.batch import Batch
from rnnlab.errors import UserError
from rnnlab.heads import ClassificationHead
from rnnlab.tasks.base import STAGES, RecurrentTask


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
        self.metrics = nn.ModuleDict(
            {
                f"{stage}_metrics": MetricCollection(
                    {
                        "acc": MulticlassAccuracy(num_classes, average="micro"),
                        "f1_macro": MulticlassF1Score(num_classes, average="macro"),
                    },
                    prefix=f"{stage}/",
                )
                for stage in STAGES
            }
        )

    def forward(self, inputs: torch.Tensor, lengths: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """inputs (B, T) or (B, T, F), lengths (B,), mask (B, T) -> logits (B, C)."""
        outputs, _ = self.backbone(inputs, lengths)
        return self.head(outputs, mask)

    def compute(self, batch: Batch, stage: str) -> torch.Tensor:
        logits = self(batch.inputs, batch.lengths, batch.mask)
        loss = F.cross_entropy(logits, batch.targets, weight=self.class_weights)
        metrics = self.metrics[f"{stage}_metrics"]
        metrics.update(logits.argmax(dim=-1), batch.targets)
        self.log_dict(metrics, on_step=False, on_epoch=True, batch_size=len(batch))
        return loss

    def predict_step(self, batch: Batch, batch_idx: int = 0) -> list[dict[str, Any]]:
        """One record per example: its dataset ``index``, ``label`` and ``probs`` per class."""
        probs = torch.softmax(self(batch.inputs, batch.lengths, batch.mask), dim=-1).cpu()
        records = []
        for index, row in zip(batch.extras["index"].tolist(), probs.tolist()):
            best = max(range(len(row)), key=row.__getitem__)
            records.append(
                {"index": index, "label": self.labels[best], "probs": {lab: round(p, 6) for lab, p in zip(self.labels, row)}}
            )
        return records
