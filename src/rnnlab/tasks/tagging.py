"""Sequence labelling (N vs N): backbone (+ character word features) -> one tag per token.

Metrics: ``acc`` over tokens (padding excluded) and, when the tags form spans (IOB1, IOB2,
BIOES), span-level ``precision`` / ``recall`` / ``f1`` (micro, CoNLL's strict matching). At test
time a per-tag report goes to ``test_report.json`` and ``test_report.txt`` in the run directory.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn
from torchmetrics import Metric

from rnnlab.backbones.char_encoder import CharWordEncoder
from rnnlab.batch import Batch
from rnnlab.data.vocab import Vocab
from rnnlab.errors import UserError
from rnnlab.heads.tagging import TaggingHead
from rnnlab.tag_schemes import allowed_transitions
from rnnlab.tasks.base import STAGES, RecurrentTask, WeightedMean
from rnnlab.tasks.confusion import ConfusionCounts
from rnnlab.tasks.media import log_text, markdown_table
from rnnlab.tasks.per_class import format_report, per_class_report, write_report
from rnnlab.tasks.span_metrics import SpanF1


class SequenceTagger(RecurrentTask):
    """One tag per input token over any backbone (bidirectional is the normal case).

    ``decoder``: ``softmax`` (independent per-token decisions) or ``crf`` (a linear-chain CRF;
    with ``constrained`` and a span scheme, transitions the scheme forbids are ruled out).
    ``char_encoder``: null, or the options of :class:`CharWordEncoder` (needs ``data.chars``).
    ``logged_examples``: validation sentences shown with gold and predicted tags in TensorBoard.
    """

    metric_modes: ClassVar[dict[str, str]] = {"loss": "min", "acc": "max", "f1": "max", "precision": "max", "recall": "max"}
    data_task: ClassVar[str] = "tagging"
    data_choices: ClassVar[str] = "data=conll or brown_pos"

    def __init__(
        self,
        data_spec: dict[str, Any],
        backbone: dict[str, Any],
        optimizer: dict[str, Any],
        scheduler: dict[str, Any] | None = None,
        decoder: str = "softmax",
        constrained: bool = True,
        head_dropout: float = 0.0,
        char_encoder: dict[str, Any] | None = None,
        logged_examples: int = 4,
    ) -> None:
        chars = data_spec.get("chars")
        self.check_data(data_spec)  # before the character encoder's own check, which assumes tagging data
        if char_encoder is not None and chars is None:
            raise UserError(
                "model.char_encoder needs character inputs from the data: select it with "
                "model/char_encoder=lstm (or gru), which also sets data.chars=true"
            )
        word_encoder = CharWordEncoder(num_chars=chars["vocab_size"], **char_encoder) if char_encoder else None
        super().__init__(data_spec, backbone, optimizer, scheduler, feature_size=word_encoder.output_size if word_encoder else 0)
        self.save_hyperparameters(logger=False)
        self.char_encoder = word_encoder
        self.labels: list[str] = data_spec["labels"]["labels"]
        self.scheme: str | None = data_spec.get("scheme")
        self.vocab = Vocab.from_dict(data_spec["input"]["vocab"])
        self.logged_examples = logged_examples
        num_tags = len(self.labels)
        if num_tags < 2:
            raise UserError(f"tagging needs at least 2 tags in the training data; found {self.labels}")
        constraints = allowed_transitions(self.labels, self.scheme) if constrained and self.scheme else None
        self.head = TaggingHead(self.backbone.output_size, num_tags, decoder, head_dropout, constraints)
        # Token accuracy as the share of correct valid tokens: counted on the device, where
        # torchmetrics' accuracy would select the valid tokens first (boolean indexing waits for a GPU).
        self.accuracy = nn.ModuleDict({f"{s}_acc": WeightedMean() for s in STAGES})
        self.spans = nn.ModuleDict({f"{s}_spans": SpanF1(self.labels, self.scheme) for s in STAGES}) if self.scheme else None
        self.test_confusion = ConfusionCounts(num_tags)
        self._examples: list[tuple[list[int], list[int], list[int]]] = []

    @property
    def default_monitor(self) -> str:  # type: ignore[override]
        return "val/f1" if self.scheme else "val/acc"

    def metric_mode(self, monitor: str) -> str:
        if monitor.endswith(("/f1", "/precision", "/recall")) and not self.scheme:
            raise UserError(f"optimized_metric={monitor}: these tags form no spans (data.scheme is none); use val/acc")
        return super().metric_mode(monitor)

    # -- model ---------------------------------------------------------------------------------

    def forward(
        self,
        inputs: torch.Tensor,
        lengths: torch.Tensor,
        mask: torch.Tensor,
        chars: torch.Tensor | None = None,
        char_lengths: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """inputs (B, T), lengths (B,), mask (B, T), chars (B, T, W), char_lengths (B, T) -> emissions (B, T, C).

        ``lengths``, ``mask`` and ``char_lengths`` may be on the CPU while the rest is on a GPU (as
        :meth:`emissions` passes them): what the backbone and character encoder read on the host."""
        features = None
        if self.char_encoder is not None:
            if chars is None or char_lengths is None:
                raise ValueError("this tagger has a character encoder: batches need extras chars and char_lengths")
            features = self.char_encoder(chars, char_lengths, mask)  # (B, T, 2H')
        outputs, _ = self.backbone(inputs, lengths, features=features)
        return self.head(outputs)

    def emissions(self, batch: Batch) -> torch.Tensor:
        host = batch.on_host  # the character encoder picks valid tokens on the host: no wait for a GPU
        return self(batch.inputs, host.lengths, host.mask, batch.extras.get("chars"), host.extras.get("char_lengths"))

    def loss_weight(self, batch: Batch) -> torch.Tensor:
        return batch.lengths.sum()

    def probe_loss(self, batch: Batch) -> torch.Tensor:
        return self.head.loss(self.emissions(batch), batch.targets, batch.mask)

    def compute(self, batch: Batch, stage: str) -> torch.Tensor:
        emissions = self.emissions(batch)  # (B, T, C)
        loss = self.head.loss(emissions, batch.targets, batch.mask)
        predicted = self.head.decode(emissions.detach(), batch.mask)  # (B, T), -100 at padding
        tokens = batch.mask.sum()
        correct = ((predicted == batch.targets) & batch.mask).sum()
        self.accuracy[f"{stage}_acc"].update(correct.double() / tokens, weight=tokens)
        self.log_epoch_value(f"{stage}/acc", self.accuracy[f"{stage}_acc"])
        if self.spans is not None:
            self.spans[f"{stage}_spans"].update(predicted, batch.targets)
        if stage == "test":
            self.test_confusion.update(predicted, batch.targets)  # IGNORE_INDEX at padding counts nowhere
        if stage == "val":
            self._keep_examples(batch, predicted)
        return loss

    # -- epoch ends: span metrics, examples, the test report -----------------------------------

    def _log_spans(self, stage: str) -> dict[str, float]:
        if self.spans is None:
            return {}
        metric: Metric = self.spans[f"{stage}_spans"]
        if not metric.update_called:
            return {}
        values = {f"{stage}/{name}": value for name, value in metric.compute().items()}
        self.log_dict(values)
        metric.reset()
        return {name: float(value) for name, value in values.items()}

    def on_train_epoch_end(self) -> None:
        self._log_spans("train")

    def on_validation_epoch_end(self) -> None:
        self._log_spans("val")
        self._log_examples()

    def on_test_epoch_end(self) -> None:
        spans = self.spans["test_spans"].report() if self.spans is not None and self.spans["test_spans"].update_called else None
        self._log_spans("test")
        if not self.test_confusion.update_called:
            return
        report = {"tags": per_class_report(self.test_confusion.compute(), self.labels), "spans": spans, "scheme": self.scheme}
        self.test_confusion.reset()
        text = format_report("tag", report["tags"])
        if spans is not None:
            text += f"\n\n{format_report(f'span ({self.scheme})', spans)}"
        if self.trainer.is_global_zero:
            write_report(Path(self.trainer.default_root_dir), report, text)

    def _keep_examples(self, batch: Batch, predicted: torch.Tensor) -> None:
        """Keep the validation sentences with dataset index < logged_examples, for TensorBoard.
        Rows are picked on the host batch; only batches holding such a sentence copy predictions."""
        host = batch.on_host
        rows = (host.extras["index"] < self.logged_examples).nonzero().flatten().tolist()
        if not rows:
            return
        kept = predicted[rows].cpu()  # (R, T)
        for row, tags in zip(rows, kept, strict=True):
            length = int(host.lengths[row])
            self._examples.append((host.inputs[row, :length].tolist(), host.targets[row, :length].tolist(), tags[:length].tolist()))

    def _log_examples(self) -> None:
        examples, self._examples = self._examples, []
        if self.trainer.sanity_checking or not examples:
            return
        # The model sees vocabulary ids, so words outside the vocabulary (or lowercased) show as such.
        blocks = []
        for words, gold, predicted in examples:
            rows = [
                (word, self.labels[g], self.labels[p] + ("" if g == p else " **✗**"))
                for word, g, p in zip(self.vocab.decode(words), gold, predicted)
            ]
            blocks.append(markdown_table(("word (vocabulary)", "gold", "predicted"), rows))
        log_text(self.loggers, "val/examples", "\n\n".join(blocks), self.global_step)

    # -- prediction ----------------------------------------------------------------------------

    def predict_step(self, batch: Batch, batch_idx: int = 0) -> list[dict[str, Any]]:
        """One record per sentence: its dataset ``index`` and ``tags``, one per token."""
        predicted = self.head.decode(self.emissions(batch), batch.mask).cpu()
        return [
            {"index": index, "tags": [self.labels[t] for t in row[:length]]}
            for index, row, length in zip(batch.on_host.extras["index"].tolist(), predicted.tolist(), batch.on_host.lengths.tolist())
        ]
