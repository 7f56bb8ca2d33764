"""``data=digits_names``: one input step -> many output steps, on real data that ships with
scikit-learn (``sklearn.datasets.load_digits``: 1,797 8x8 images of handwritten digits, pixel
values 0..16, from the UCI optical digits set).

Source: the 64 pixel values scaled to [0, 1], a sequence of one feature vector (1, 64).
Target: the digit's English name spelled in characters ("seven").
"""

from __future__ import annotations

import re
from typing import Any

import torch

from rnnlab.data.pairs import SequencePair
from rnnlab.data.seq2seq import Seq2SeqDataModule
from rnnlab.data.splits import check_fraction, stratified_split
from rnnlab.errors import UserError

NAMES: tuple[str, ...] = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
NUM_PIXELS = 64
MAX_PIXEL = 16
_SEPARATORS = re.compile(r"[\s,]+")


def load_digit_pairs() -> list[SequencePair]:
    """Every image as a pair (pixel values 0..16 joined by spaces, digit name), in dataset order."""
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise UserError("data=digits_names needs the package scikit-learn: pip install scikit-learn") from None
    digits = load_digits()
    return [
        SequencePair(" ".join(str(int(value)) for value in image), NAMES[int(label)], f"digits:{i}")
        for i, (image, label) in enumerate(zip(digits.data, digits.target, strict=True))
    ]


def parse_pixels(text: str, origin: str) -> torch.Tensor:
    """64 pixel values 0..16 separated by spaces or commas -> (1, 64) floats in [0, 1];
    ``origin`` ("path:line") names the input in errors."""
    fields = [field for field in _SEPARATORS.split(text.strip()) if field]
    expected = f"expected {NUM_PIXELS} pixel values 0..{MAX_PIXEL} separated by spaces or commas"
    if len(fields) != NUM_PIXELS:
        raise UserError(f"{origin}: {expected}; found {len(fields)} values")
    values = [_pixel(field) for field in fields]
    if None in values:
        raise UserError(f"{origin}: {expected}; found {fields[values.index(None)]!r}")
    return torch.tensor(values, dtype=torch.float32).div_(MAX_PIXEL).unsqueeze(0)


def _pixel(field: str) -> float | None:
    """One pixel value, or None when ``field`` is not a number in 0..16 (nan fails the comparison)."""
    try:
        value = float(field)
    except ValueError:
        return None
    return value if 0 <= value <= MAX_PIXEL else None


class DigitsNamesDataModule(Seq2SeqDataModule):
    """An 8x8 digit image -> the digit's name in characters, split by ``val_fraction`` /
    ``test_fraction`` stratified by digit (seeded by ``split_seed``).

    The source is a feature vector: there is no source vocabulary (``self.vocab`` stays None)
    and only the target vocabulary is fitted. The target tokenizer is fixed to characters.
    """

    def __init__(
        self, val_fraction: float = 0.15, test_fraction: float = 0.15, split_seed: int = 0, **options: Any
    ) -> None:
        super().__init__(target_tokenizer="char", **options)
        if self.shared_vocab:
            raise UserError("data.shared_vocab must be false: data=digits_names has pixel inputs, no source vocabulary")
        check_fraction("val_fraction", val_fraction)
        check_fraction("test_fraction", test_fraction)
        self.fractions = {"val": val_fraction, "test": test_fraction}
        self.split_seed = split_seed
        self._splits: dict[str, list[SequencePair]] | None = None

    def read_split(self, split: str) -> list[SequencePair]:
        if self._splits is None:
            self._splits = stratified_split(
                load_digit_pairs(), self.fractions, self.split_seed, label_of=_target, group_of=_source
            )
        return self._splits[split]

    def describe(self, split: str) -> str:
        if split == "train":
            return "data.val_fraction + data.test_fraction leave no images for training"
        return f"data.{split}_fraction={self.fractions[split]} selects no images"

    def input_spec(self) -> dict[str, Any]:
        return {"kind": "features", "num_features": NUM_PIXELS}

    def encode_source(self, text: str, origin: str) -> torch.Tensor:
        return parse_pixels(text, origin)

    def fit_vocabs(self, train: list[SequencePair]) -> None:
        self.target_vocab = self.build_vocab([self.target_tokenizer.tokenize(pair.target) for pair in train])


def _target(pair: SequencePair) -> str:
    return pair.target


def _source(pair: SequencePair) -> str:
    return pair.source
