"""Text classification data: raw labelled texts -> tokens -> ids, vocabulary fitted on train only."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any, ClassVar

import torch

from rnnlab.data.datamodule import Example, SequenceDataModule, UserFilesMixin
from rnnlab.data.readers import TextExample, read_text_classification_file, read_text_lines
from rnnlab.data.splits import stratified_split
from rnnlab.data.tokenizers import build_tokenizer
from rnnlab.data.vocab import LabelSet, Vocab, check_vocab_options
from rnnlab.errors import UserError



class TextClassificationDataModule(SequenceDataModule):
    """Base of every text classification dataset. Subclasses implement :meth:`read_split`.

    The vocabulary and label set are fitted on the training split only. With ``spec`` (from a
    checkpoint) they are taken from it instead and nothing is refitted. ``test_file`` replaces the
    dataset's own test split with a user file read by the ``text_csv`` reader (``format``,
    ``text_field``, ``label_field``).
    """

    def __init__(
        self,
        tokenizer: str = "word",
        lowercase: bool = True,
        max_length: int | None = None,
        min_freq: int = 1,
        max_vocab_size: int | None = None,
        test_file: str | None = None,
        format: str | None = None,  # noqa: A002 - the user-facing config key is data.format
        text_field: str = "text",
        label_field: str = "label",
        spec: dict[str, Any] | None = None,
        **loader_options: Any,
    ) -> None:
        super().__init__(test_file=test_file, **loader_options)
        if max_length is not None and max_length < 1:
            raise UserError(f"data.max_length must be null or >= 1; got {max_length}")
        check_vocab_options(min_freq, max_vocab_size)
        self.min_freq = min_freq
        self.max_vocab_size = max_vocab_size
        self.format = format
        self.text_field = text_field
        self.label_field = label_field
        if spec is not None:
            tokens = spec["input"]
            tokenizer, lowercase, max_length = tokens["tokenizer"], tokens["lowercase"], tokens["max_length"]
        self.tokenizer_name = tokenizer
        self.lowercase = lowercase
        self.max_length = max_length
        self.tokenizer = build_tokenizer(tokenizer, lowercase)
        self.vocab = Vocab.from_dict(spec["input"]["vocab"]) if spec else None
        self.labels = LabelSet.from_dict(spec["labels"]) if spec else None
        self.label_counts: list[int] = list(spec["label_counts"]) if spec else []

    # -- what subclasses provide ---------------------------------------------------------------

    def read_split(self, split: str) -> list[TextExample]:
        """Raw labelled examples of ``split`` (train, val or test)."""
        raise NotImplementedError

    # -- fitting and encoding ------------------------------------------------------------------

    @property
    def spec(self) -> dict[str, Any]:
        if self.vocab is None or self.labels is None:
            raise RuntimeError("call setup('fit') before asking for the spec")
        return {
            "task": "classification",
            "input": self.token_input_spec(self.tokenizer_name, self.lowercase, self.max_length),
            "labels": self.labels.to_dict(),
            "label_counts": self.label_counts,
        }

    def setup(self, stage: str | None = None) -> None:
        for split in self.pending_splits(stage):
            examples = self._read(split)
            if not examples:
                raise UserError(f"the {split} split is empty ({self._describe(split)})")
            if self.vocab is None:
                self._fit(examples)
            self.datasets[split] = self.encode(examples)

    def read_file(self, path: str) -> list[TextExample]:
        """A labelled user file, read with this module's ``format``, ``text_field`` and ``label_field``."""
        return read_text_classification_file(path, self.format, self.text_field, self.label_field)

    def _fit(self, train: list[TextExample]) -> None:
        self.vocab = Vocab.build(
            (self.tokenize(example.text) for example in train), min_freq=self.min_freq, max_size=self.max_vocab_size
        )
        counts = Counter(example.label for example in train)
        self.labels = LabelSet.build(counts.keys())
        self.label_counts = [counts[label] for label in self.labels.labels]

    def tokenize(self, text: str) -> list[str]:
        tokens = self.tokenizer.tokenize(text)
        return tokens[: self.max_length] if self.max_length else tokens

    def encode(self, examples: list[TextExample], with_labels: bool = True) -> list[Example]:
        """Tokens -> ids (unknown tokens -> <unk>), labels -> class ids; errors name the example's source."""
        encoded = []
        for index, example in enumerate(examples):
            tokens = self.tokenize(example.text)
            if not tokens:
                raise UserError(f"{example.source}: the text has no tokens")
            item: Example = {"inputs": torch.tensor(self.vocab.encode(tokens), dtype=torch.long), "index": index}
            if with_labels:
                if example.label not in self.labels:
                    raise UserError(
                        f"{example.source}: label {example.label!r} never occurs in the training data "
                        f"(training labels: {', '.join(self.labels.labels)})"
                    )
                item["target"] = self.labels.encode(example.label)
            encoded.append(item)
        return encoded

    def load_predict_file(self, path: str) -> list[dict[str, Any]]:
        """Read texts to classify into the ``predict`` split; returns ``{"text": ...}`` per input, in order.

        A .jsonl / .csv / .tsv file is read for its ``text_field`` (labels, if any, are ignored);
        any other file holds one raw text per line.
        """
        if Path(path).suffix.lower() in (".jsonl", ".csv", ".tsv"):
            examples = read_text_classification_file(
                path, None, self.text_field, self.label_field, require_labels=False
            )
        else:
            examples = [TextExample(text, None, f"{path}:{line}") for line, text in read_text_lines(path)]
        self.datasets["predict"] = self.encode(examples, with_labels=False)
        return [{"text": example.text} for example in examples]


class TextFileDataModule(UserFilesMixin, TextClassificationDataModule):
    """``data=text_csv``: the user's own csv / tsv / jsonl files of (text, label) rows.

    Without ``val_file`` / ``test_file`` those splits are carved out of ``train_file`` by
    ``val_fraction`` / ``test_fraction`` (label-stratified, seeded by ``split_seed``; rows with
    identical text stay in one split).
    """

    unit: ClassVar[str] = "rows"

    def carve(self, rows: list[TextExample], fractions: dict[str, float]) -> dict[str, list[TextExample]]:
        return stratified_split(rows, fractions, self.split_seed, label_of=_label, group_of=_text)


def _label(row: TextExample) -> str | None:
    return row.label


def _text(row: TextExample) -> str:
    return row.text
