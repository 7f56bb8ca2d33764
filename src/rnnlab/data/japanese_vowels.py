"""``data=japanese_vowels``: speaker identification from real-valued, variable-length sequences.

UCI Japanese Vowels (Kudo, Toyama & Shimbo, 1999): 9 male speakers each uttering /ae/; every
utterance is 7..29 frames of 12 LPC cepstrum coefficients. 270 training and 370 test utterances,
read offline from the copy that ships with sktime (``sktime.datasets.load_japanese_vowels``).
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from typing import Any

import torch

from rnnlab.data.datamodule import Example, SequenceDataModule
from rnnlab.data.readers import read_text_lines
from rnnlab.data.splits import check_fraction, stratified_split
from rnnlab.data.vocab import LabelSet
from rnnlab.errors import UserError

NUM_COEFFICIENTS = 12
_VALUE_SEPARATORS = re.compile(r"[\s,]+")


@dataclass(frozen=True)
class Utterance:
    """``frames`` (T, 12) float32 coefficients; ``speaker`` "1".."9" (None for prediction input);
    ``source`` names it in messages (``JapaneseVowels train:17`` or ``path:line``)."""

    frames: torch.Tensor
    speaker: str | None
    source: str


def load_japanese_vowels(split: str) -> list[Utterance]:
    """The official ``train`` (270) or ``test`` (370) utterances, in the dataset's order."""
    try:
        from sktime.datasets import load_japanese_vowels as load
    except ImportError:
        raise UserError("data=japanese_vowels needs the package sktime: pip install sktime") from None
    # df-list: one (T_i, 12) DataFrame per utterance, unpadded (numpy3D refuses unequal lengths).
    frames, speakers = load(split=split, return_type="df-list")
    return [
        Utterance(torch.tensor(table.to_numpy(), dtype=torch.float32), str(speaker), f"JapaneseVowels {split}:{i}")
        for i, (table, speaker) in enumerate(zip(frames, speakers, strict=True))
    ]


def parse_frames(text: str, origin: str) -> torch.Tensor:
    """``"c1 .. c12; c1 .. c12; ..."`` (frames separated by ";", coefficients by spaces or commas)
    -> (T, 12) float32; ``origin`` ("path:line") names the input in errors."""
    frames = []
    for number, frame in enumerate(text.split(";"), start=1):
        fields = [field for field in _VALUE_SEPARATORS.split(frame.strip()) if field]
        if len(fields) != NUM_COEFFICIENTS:
            raise UserError(
                f"{origin}: frame {number} has {len(fields)} values; expected {NUM_COEFFICIENTS} coefficients "
                "separated by spaces or commas, frames separated by ';'"
            )
        try:
            values = [float(field) for field in fields]
        except ValueError:
            raise UserError(f"{origin}: frame {number} holds a value that is not a number: {frame.strip()!r}") from None
        frames.append(values)
    tensor = torch.tensor(frames, dtype=torch.float32)
    if not torch.isfinite(tensor).all():
        raise UserError(f"{origin}: every coefficient must be a finite number (no nan or inf)")
    return tensor


class JapaneseVowelsDataModule(SequenceDataModule):
    """Which of 9 speakers said the vowel: one label per sequence of (T_i, 12) feature frames.

    Validation is ``val_fraction`` of the official training set, stratified by speaker (seeded by
    ``split_seed``, independent of the training seed); the official 370 test utterances are the
    test split. With ``normalize`` each coefficient is standardised by the mean and standard
    deviation of the training part's frames, stored in the spec. With ``spec`` (from a
    checkpoint) the labels and that scaler come from it, nothing is refitted and ``normalize``
    is ignored.

    Examples: ``{"inputs": FloatTensor (T_i, 12), "target": speaker id, "index": i}``.
    """

    def __init__(
        self,
        val_fraction: float = 0.15,
        split_seed: int = 0,
        normalize: bool = True,
        spec: dict[str, Any] | None = None,
        **loader_options: Any,
    ) -> None:
        super().__init__(**loader_options)
        check_fraction("val_fraction", val_fraction)
        self.val_fraction = val_fraction
        self.split_seed = split_seed
        self.normalize = normalize
        self.labels = LabelSet.from_dict(spec["labels"]) if spec else None
        self.label_counts: list[int] = list(spec["label_counts"]) if spec else []
        self.scaler: dict[str, list[float]] | None = spec["input"]["scaler"] if spec else None
        self._train_parts: dict[str, list[Utterance]] | None = None

    # -- splits --------------------------------------------------------------------------------

    def read_split(self, split: str) -> list[Utterance]:
        if split == "test":
            return load_japanese_vowels("test")
        if self._train_parts is None:
            self._train_parts = stratified_split(
                load_japanese_vowels("train"), {"val": self.val_fraction}, self.split_seed, label_of=_speaker
            )
        return self._train_parts[split]

    def read_file(self, path: str) -> list[Utterance]:
        """``test_file`` is not an option here: there is no labelled file format of utterances."""
        raise UserError(
            f"data=japanese_vowels takes no test_file ({path}): its test split is the dataset's own 370 utterances"
        )

    def describe(self, split: str) -> str:
        if split == "train":
            return f"data.val_fraction={self.val_fraction} leaves no utterances for training"
        return f"data.val_fraction={self.val_fraction} selects no utterances"

    # -- fitting and encoding ------------------------------------------------------------------

    @property
    def fitted(self) -> bool:
        # The label set marks the module as fitted: feature inputs have no vocabulary.
        return self.labels is not None

    @property
    def spec(self) -> dict[str, Any]:
        if self.labels is None:
            raise RuntimeError("call setup('fit') before asking for the spec")
        return {
            "task": "classification",
            "input": {"kind": "features", "num_features": NUM_COEFFICIENTS, "scaler": self.scaler},
            "labels": self.labels.to_dict(),
            "label_counts": self.label_counts,
        }

    def setup(self, stage: str | None = None) -> None:
        for split in self.pending_splits(stage):
            utterances = self._read(split)
            if not utterances:
                raise UserError(f"the {split} split is empty ({self._describe(split)})")
            if not self.fitted:
                self._fit(utterances)
            self.datasets[split] = self.encode(utterances)

    def _fit(self, train: list[Utterance]) -> None:
        counts = Counter(utterance.speaker for utterance in train)
        self.labels = LabelSet.build(counts)
        self.label_counts = [counts[label] for label in self.labels.labels]
        if self.normalize:
            # Over every training frame, in float64; population std, as scikit-learn's StandardScaler.
            frames = torch.cat([utterance.frames for utterance in train]).double()  # (sum T_i, 12)
            self.scaler = {"mean": frames.mean(dim=0).tolist(), "std": frames.std(dim=0, correction=0).tolist()}

    def standardize(self, frames: torch.Tensor) -> torch.Tensor:
        """(T, 12) raw coefficients -> (T, 12) as the model sees them (standardised when fitted so)."""
        if self.scaler is None:
            return frames
        mean = torch.tensor(self.scaler["mean"], dtype=frames.dtype)
        std = torch.tensor(self.scaler["std"], dtype=frames.dtype)
        return (frames - mean) / std

    def encode(self, utterances: list[Utterance], with_labels: bool = True) -> list[Example]:
        """Utterances -> ``{"inputs": (T_i, 12) float32, "target": speaker id, "index": i}``."""
        encoded = []
        for index, utterance in enumerate(utterances):
            item: Example = {"inputs": self.standardize(utterance.frames), "index": index}
            if with_labels:
                item["target"] = self.labels.encode(utterance.speaker)
            encoded.append(item)
        return encoded

    def load_predict_file(self, path: str) -> list[dict[str, Any]]:
        """Read utterances to classify into the ``predict`` split; returns ``{"frames": T}`` per line.

        One utterance per line: frames separated by ";", the 12 coefficients of a frame by spaces
        or commas (raw values, as in the dataset; the checkpoint's scaler is applied here).
        """
        utterances = []
        for line, text in read_text_lines(path):
            origin = f"{path}:{line}"
            utterances.append(Utterance(parse_frames(text, origin), None, origin))
        self.datasets["predict"] = self.encode(utterances, with_labels=False)
        return [{"frames": len(utterance.frames)} for utterance in utterances]


def _speaker(utterance: Utterance) -> str | None:
    return utterance.speaker
