"""Token vocabularies and label sets, with JSON-able round trips for checkpoints."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any

from rnnlab.errors import UserError

DEFAULT_SPECIALS: tuple[str, ...] = ("<pad>", "<unk>", "<bos>", "<eos>")


def check_vocab_options(min_freq: int, max_vocab_size: int | None) -> None:
    """The data modules' ``data.min_freq`` (>= 1) and ``data.max_vocab_size`` (null or >= 0)."""
    if min_freq < 1:
        raise UserError(f"data.min_freq must be >= 1; got {min_freq}")
    if max_vocab_size is not None and max_vocab_size < 0:
        raise UserError(f"data.max_vocab_size must be null or >= 0; got {max_vocab_size}")


class Vocab:
    """A token <-> id mapping: special tokens first, then tokens by count.

    Build it from the training split only, so validation and test tokens unseen in training
    map to ``<unk>`` exactly as they would at prediction time.
    """

    def __init__(self, tokens: Sequence[str], specials: Sequence[str] = DEFAULT_SPECIALS) -> None:
        """``tokens`` is the full id order and must start with ``specials``."""
        if tuple(tokens[: len(specials)]) != tuple(specials):
            raise ValueError(f"vocab tokens must start with the specials {list(specials)}")
        if len(set(tokens)) != len(tokens):
            raise ValueError("vocab tokens must be unique")
        for needed in ("<pad>", "<unk>"):
            if needed not in specials:
                raise ValueError(f"vocab specials must include {needed!r}")
        self._tokens = list(tokens)
        self._specials = tuple(specials)
        self._ids = {token: i for i, token in enumerate(self._tokens)}

    @classmethod
    def build(
        cls,
        token_lists: Iterable[Sequence[str]],
        min_freq: int = 1,
        max_size: int | None = None,
        specials: Sequence[str] = DEFAULT_SPECIALS,
    ) -> Vocab:
        """Count tokens and order them by count descending, ties alphabetically.

        ``min_freq`` drops tokens seen fewer times; ``max_size`` caps the number of
        non-special tokens (the specials always come on top, so ``len`` can reach
        ``max_size + len(specials)``). Tokens equal to a special are not added twice.
        """
        if min_freq < 1:
            raise ValueError(f"min_freq must be >= 1; got {min_freq}")
        if max_size is not None and max_size < 0:
            raise ValueError(f"max_size must be >= 0 or None; got {max_size}")
        counts: Counter[str] = Counter()
        for tokens in token_lists:
            counts.update(tokens)
        special_set = set(specials)
        ranked = sorted(
            (t for t, c in counts.items() if c >= min_freq and t not in special_set),
            key=lambda t: (-counts[t], t),
        )
        if max_size is not None:
            ranked = ranked[:max_size]
        return cls([*specials, *ranked], specials)

    def __len__(self) -> int:
        return len(self._tokens)

    def __contains__(self, token: object) -> bool:
        return token in self._ids

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Vocab):
            return NotImplemented
        return self._tokens == other._tokens and self._specials == other._specials

    def __repr__(self) -> str:
        return f"Vocab(size={len(self)})"

    @property
    def tokens(self) -> list[str]:
        """All tokens in id order (a copy)."""
        return list(self._tokens)

    @property
    def specials(self) -> tuple[str, ...]:
        return self._specials

    @property
    def pad_id(self) -> int:
        return self._ids["<pad>"]

    @property
    def unk_id(self) -> int:
        return self._ids["<unk>"]

    @property
    def bos_id(self) -> int:
        return self._ids["<bos>"]

    @property
    def eos_id(self) -> int:
        return self._ids["<eos>"]

    def token_to_id(self, token: str) -> int:
        """The id of ``token``, or the ``<unk>`` id when it is not in the vocabulary."""
        return self._ids.get(token, self.unk_id)

    def encode(self, tokens: Iterable[str]) -> list[int]:
        """Tokens -> ids; unknown tokens become the ``<unk>`` id."""
        unk = self.unk_id
        return [self._ids.get(t, unk) for t in tokens]

    def decode(self, ids: Iterable[int]) -> list[str]:
        """Ids -> tokens (IndexError on an id outside the vocabulary)."""
        return [self._tokens[int(i)] for i in ids]

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able data; ``Vocab.from_dict`` rebuilds an equal vocabulary."""
        return {"tokens": list(self._tokens), "specials": list(self._specials)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Vocab:
        return cls(list(data["tokens"]), tuple(data["specials"]))


class LabelSet:
    """Class labels <-> ids, ids following the sorted label strings."""

    def __init__(self, labels: Sequence[str]) -> None:
        """``labels`` is the id order; they must be unique."""
        if len(set(labels)) != len(labels):
            raise ValueError("labels must be unique")
        self._labels = list(labels)
        self._ids = {label: i for i, label in enumerate(self._labels)}

    @classmethod
    def build(cls, labels: Iterable[str]) -> LabelSet:
        """The sorted unique labels seen."""
        return cls(sorted(set(labels)))

    def __len__(self) -> int:
        return len(self._labels)

    def __contains__(self, label: object) -> bool:
        return label in self._ids

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, LabelSet):
            return NotImplemented
        return self._labels == other._labels

    def __repr__(self) -> str:
        return f"LabelSet({self._labels!r})"

    @property
    def labels(self) -> list[str]:
        """All labels in id order (a copy)."""
        return list(self._labels)

    def encode(self, label: str) -> int:
        """The id of ``label``; KeyError when unknown (callers report it with file:line)."""
        return self._ids[label]

    def decode(self, index: int) -> str:
        return self._labels[int(index)]

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able data; ``LabelSet.from_dict`` rebuilds an equal set."""
        return {"labels": list(self._labels)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LabelSet:
        return cls(list(data["labels"]))
