"""Collate variable-length examples into one padded ``Batch``."""

from __future__ import annotations

from typing import Any

import torch
from torch.nn.utils.rnn import pad_sequence

from rnnlab.batch import IGNORE_INDEX, Batch
from rnnlab.masking import lengths_to_mask

__all__ = ["IGNORE_INDEX", "SequenceCollator"]


class SequenceCollator:
    """Pads a list of example dicts into a ``Batch``; picklable for DataLoader workers.

    Each example is a dict with
      ``"inputs"``  LongTensor (T,) token ids, or FloatTensor (T, F) features, T >= 1;
      ``"target"``  optional: an int class id, or a tensor whose first dim may vary
                    (e.g. (T,) tags) and is padded with ``IGNORE_INDEX`` (-100) so that
                    ``cross_entropy`` skips padded steps;
      ``"index"``   int, the example's position in its dataset;
      ``"chars"``   optional LongTensor (T, W_i): each token's character ids, padded with 0, and
      ``"char_lengths"`` LongTensor (T,) >= 1, given together: collated into ``extras["chars"]``
                    (B, T, W) and ``extras["char_lengths"]`` (B, T), 0 at padded tokens.
    Other keys are ignored. Examples keep the order given.
    """

    def __init__(self, pad_id: int = 0) -> None:
        self.pad_id = pad_id

    def __call__(self, examples: list[dict[str, Any]]) -> Batch:
        """-> Batch(inputs (B, T) | (B, T, F), lengths (B,), mask (B, T), targets, extras["index"] (B,))."""
        if not examples:
            raise ValueError("cannot collate an empty list of examples")
        inputs = [ex["inputs"] for ex in examples]
        for i, x in enumerate(inputs):
            if x.dim() == 0 or x.shape[0] == 0:
                raise ValueError(f"example {i} of the batch has no steps; data modules must drop empty sequences")
        lengths = torch.tensor([x.shape[0] for x in inputs], dtype=torch.long)
        pad_value = 0.0 if inputs[0].is_floating_point() else float(self.pad_id)
        padded = pad_sequence(inputs, batch_first=True, padding_value=pad_value)  # (B, T[, F])
        mask = lengths_to_mask(lengths, padded.shape[1])
        try:
            index = torch.tensor([int(ex["index"]) for ex in examples], dtype=torch.long)
        except KeyError:
            raise ValueError('every example needs an "index" (its position in the dataset)') from None
        extras = {"index": index}
        if "chars" in examples[0]:
            extras.update(_collate_chars(examples, padded.shape[1]))
        return Batch(inputs=padded, lengths=lengths, mask=mask, targets=_collate_targets(examples), extras=extras)

    def __repr__(self) -> str:
        return f"SequenceCollator(pad_id={self.pad_id})"


def _collate_targets(examples: list[dict[str, Any]]) -> torch.Tensor | None:
    """Class ids -> (B,) long; tensor targets -> (B, T, ...) padded with IGNORE_INDEX; none -> None."""
    targets = [ex.get("target") for ex in examples]
    present = [t is not None for t in targets]
    if not any(present):
        return None
    if not all(present):
        raise ValueError("either every example in a batch has a target or none has")
    first = targets[0]
    if isinstance(first, torch.Tensor) and first.dim() > 0:
        return pad_sequence(targets, batch_first=True, padding_value=IGNORE_INDEX)
    return torch.tensor([int(t) for t in targets], dtype=torch.long)


def _collate_chars(examples: list[dict[str, Any]], steps: int) -> dict[str, torch.Tensor]:
    """Per-token character ids (T_i, W_i) -> ``chars`` (B, T, W) and ``char_lengths`` (B, T), 0-padded."""
    width = max(ex["chars"].shape[1] for ex in examples)
    chars = torch.zeros(len(examples), steps, width, dtype=torch.long)
    char_lengths = torch.zeros(len(examples), steps, dtype=torch.long)
    for row, ex in enumerate(examples):
        length, word_width = ex["chars"].shape
        chars[row, :length, :word_width] = ex["chars"]
        char_lengths[row, :length] = ex["char_lengths"]
    return {"chars": chars, "char_lengths": char_lengths}
