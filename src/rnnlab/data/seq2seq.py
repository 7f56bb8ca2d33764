"""Sequence-to-sequence data (N vs M): source/target pairs -> source ids (or features) and target ids.

Every seq2seq data module reads :class:`~rnnlab.data.pairs.SequencePair` s and serves examples

    {"inputs": (S,) source ids | (S, F) features, "target": (T + 1,) target ids then <eos>,
     "references": [[target ids without <eos>], ...], "index": int}

Multiple references: in the train split every pair is its own example, with its own target as
the only reference. In val and test (and ``test_file``), pairs whose source texts are identical
are merged into one example whose references are all their distinct targets (distinct once
encoded) in file order, and whose ``target`` is the first; the model is scored against the
closest reference. This is how a word with several pronunciations (CMUdict) is evaluated.

The source and target vocabularies are fitted on the training split only (one vocabulary for
both sides with ``shared_vocab``); ``min_freq`` and ``max_vocab_size`` apply to each.
"""

from __future__ import annotations

import random
from typing import Any, ClassVar

import torch

from rnnlab.batch import Batch
from rnnlab.data.collate import SequenceCollator
from rnnlab.data.datamodule import Example, SequenceDataModule, UserFilesMixin
from rnnlab.data.pairs import SequencePair, read_tsv_pairs
from rnnlab.data.readers import read_text_lines
from rnnlab.data.splits import stratified_split
from rnnlab.data.tokenizers import TOKENIZERS, build_tokenizer
from rnnlab.data.vocab import Vocab, check_vocab_options
from rnnlab.errors import UserError, check_choice


def join_tokens(tokens: list[str], tokenizer: str) -> str:
    """Tokens back to a text: characters joined by "" (spaces are tokens of their own), words by " "."""
    return ("" if tokenizer == "char" else " ").join(tokens)


class Seq2SeqCollator(SequenceCollator):
    """A :class:`SequenceCollator` that also passes each example's reference targets along.

    -> Batch(inputs (B, S) | (B, S, F), lengths (B,), mask (B, S), targets (B, T + 1) padded with
    IGNORE_INDEX, extras["index"] (B,), extras["references"]: one list of id lists per example,
    in batch order (when the examples have references)).
    """

    def __call__(self, examples: list[dict[str, Any]]) -> Batch:
        batch = super().__call__(examples)
        if "references" in examples[0]:
            batch.extras["references"] = [example["references"] for example in examples]
        return batch

    def __repr__(self) -> str:
        return f"Seq2SeqCollator(pad_id={self.pad_id})"


class Seq2SeqDataModule(SequenceDataModule):
    """Base of every seq2seq dataset. Subclasses implement :meth:`read_split`.

    Options: ``source_tokenizer`` / ``target_tokenizer`` (char | word), ``lowercase`` (the source
    side only), ``shared_vocab``, ``min_freq``, ``max_vocab_size``, ``test_file`` (a tsv_pairs
    file that replaces the test split). With ``spec`` (from a checkpoint) the tokenizers,
    ``lowercase`` and both vocabularies come from it and nothing is refitted.

    ``self.vocab`` is the source vocabulary (so ``pad_id`` and ``token_input_spec`` apply to the
    inputs), ``self.target_vocab`` the target one; with ``shared_vocab`` they are one object.
    Sources that are feature vectors (``data=digits_names``) override :meth:`encode_source`,
    :meth:`fit_vocabs` and :meth:`input_spec`, and keep ``self.vocab`` None.
    """

    def __init__(
        self,
        source_tokenizer: str = "char",
        target_tokenizer: str = "char",
        lowercase: bool = False,
        shared_vocab: bool = False,
        min_freq: int = 1,
        max_vocab_size: int | None = None,
        test_file: str | None = None,
        spec: dict[str, Any] | None = None,
        **loader_options: Any,
    ) -> None:
        super().__init__(test_file=test_file, **loader_options)
        check_vocab_options(min_freq, max_vocab_size)
        self.min_freq = min_freq
        self.max_vocab_size = max_vocab_size
        self.target_vocab: Vocab | None = None
        if spec is not None:
            source, target = spec["input"], spec["target"]
            if source["kind"] == "tokens":
                source_tokenizer, lowercase = source["tokenizer"], source["lowercase"]
                self.vocab = Vocab.from_dict(source["vocab"])
            target_tokenizer = target["tokenizer"]
            shared_vocab = spec["shared_vocab"]
            self.target_vocab = self.vocab if shared_vocab else Vocab.from_dict(target["vocab"])
        check_choice("data.source_tokenizer", source_tokenizer, TOKENIZERS)
        check_choice("data.target_tokenizer", target_tokenizer, TOKENIZERS)
        self.source_tokenizer_name = source_tokenizer
        self.target_tokenizer_name = target_tokenizer
        self.lowercase = lowercase
        self.shared_vocab = shared_vocab
        self.source_tokenizer = build_tokenizer(source_tokenizer, lowercase)
        # Targets keep their case: they are what the model must write.
        self.target_tokenizer = build_tokenizer(target_tokenizer, lowercase=False)

    # -- what subclasses provide ---------------------------------------------------------------

    def read_split(self, split: str) -> list[SequencePair]:
        """The source/target pairs of ``split`` (train, val or test)."""
        raise NotImplementedError

    def read_file(self, path: str) -> list[SequencePair]:
        """A user file of ``source<TAB>target`` lines (for ``test_file``)."""
        return read_tsv_pairs(path)

    def input_spec(self) -> dict[str, Any]:
        """``spec["input"]``: how sources become model inputs."""
        return self.token_input_spec(self.source_tokenizer_name, self.lowercase, None)

    def encode_source(self, text: str, origin: str) -> torch.Tensor:
        """One source text -> (S,) ids (unknown tokens -> <unk>); ``origin`` ("path:line") names it in errors."""
        tokens = self.source_tokenizer.tokenize(text)
        if not tokens:
            raise UserError(f"{origin}: the source has no tokens")
        return torch.tensor(self.vocab.encode(tokens), dtype=torch.long)

    def fit_vocabs(self, train: list[SequencePair]) -> None:
        """The source and target vocabularies (or one shared) from the training pairs."""
        sources = [self.source_tokenizer.tokenize(pair.source) for pair in train]
        targets = [self.target_tokenizer.tokenize(pair.target) for pair in train]
        if self.shared_vocab:
            self.vocab = self.target_vocab = self.build_vocab(sources + targets)
        else:
            self.vocab = self.build_vocab(sources)
            self.target_vocab = self.build_vocab(targets)

    def build_vocab(self, token_lists: list[list[str]]) -> Vocab:
        return Vocab.build(token_lists, min_freq=self.min_freq, max_size=self.max_vocab_size)

    # -- fitting and encoding ------------------------------------------------------------------

    @property
    def spec(self) -> dict[str, Any]:
        if self.target_vocab is None:
            raise RuntimeError("call setup('fit') before asking for the spec")
        return {
            "task": "seq2seq",
            "input": self.input_spec(),
            "target": {
                "kind": "tokens",
                "vocab": self.target_vocab.to_dict(),
                "vocab_size": len(self.target_vocab),
                "pad_id": self.target_vocab.pad_id,
                "tokenizer": self.target_tokenizer_name,
            },
            "shared_vocab": self.shared_vocab,
        }

    @property
    def fitted(self) -> bool:
        # The target vocabulary marks the module as fitted: vector sources have no source vocabulary.
        return self.target_vocab is not None

    def setup(self, stage: str | None = None) -> None:
        for split in self.pending_splits(stage):
            pairs = self._read(split)
            if not pairs:
                raise UserError(f"the {split} split is empty ({self._describe(split)})")
            if not self.fitted:
                self.fit_vocabs(pairs)
            self.datasets[split] = self.encode(pairs, merge_references=split != "train")

    def encode_target(self, text: str, origin: str) -> list[int]:
        """One target text -> ids without <eos> (unknown tokens -> <unk>)."""
        tokens = self.target_tokenizer.tokenize(text)
        if not tokens:
            raise UserError(f"{origin}: the target has no tokens")
        return self.target_vocab.encode(tokens)

    def encode(self, pairs: list[SequencePair], merge_references: bool) -> list[Example]:
        """Pairs -> examples; with ``merge_references`` pairs with one source text become one
        example holding all their distinct targets (see the module docstring)."""
        if merge_references:
            groups: dict[str, list[SequencePair]] = {}
            for pair in pairs:
                groups.setdefault(pair.source, []).append(pair)
            units = list(groups.values())
        else:
            units = [[pair] for pair in pairs]
        encoded = []
        for index, unit in enumerate(units):
            references = list(dict.fromkeys(tuple(self.encode_target(p.target, p.origin)) for p in unit))
            first = references[0]
            encoded.append({
                "inputs": self.encode_source(unit[0].source, unit[0].origin),
                "target": torch.tensor([*first, self.target_vocab.eos_id], dtype=torch.long),
                "references": [list(reference) for reference in references],
                "index": index,
            })
        return encoded

    def collator(self) -> Seq2SeqCollator:
        return Seq2SeqCollator(pad_id=self.pad_id)

    def load_predict_file(self, path: str) -> list[dict[str, Any]]:
        """Sources to transduce, one per line, into the ``predict`` split -> ``{"source": line}`` per line."""
        lines = read_text_lines(path)
        self.datasets["predict"] = [
            {"inputs": self.encode_source(text, f"{path}:{number}"), "index": index}
            for index, (number, text) in enumerate(lines)
        ]
        return [{"source": text} for _, text in lines]


class TsvPairsDataModule(UserFilesMixin, Seq2SeqDataModule):
    """``data=tsv_pairs``: the user's own ``source<TAB>target`` files (see :mod:`rnnlab.data.pairs`).

    Without ``val_file`` / ``test_file`` those splits are carved out of ``train_file`` by
    ``val_fraction`` / ``test_fraction`` (seeded by ``split_seed``); all pairs with one source
    text stay in one split, so every reference of a held-out source is held out with it.
    """

    unit: ClassVar[str] = "pairs"

    def carve(self, pairs: list[SequencePair], fractions: dict[str, float]) -> dict[str, list[SequencePair]]:
        return stratified_split(pairs, fractions, self.split_seed, label_of=_one_stratum, group_of=_source)


def _one_stratum(pair: SequencePair) -> str:
    return ""


def _source(pair: SequencePair) -> str:
    return pair.source


# -- generated tasks ---------------------------------------------------------------------------


def generate_symbol_pairs(
    count: int, num_symbols: int, min_length: int, max_length: int, seed: int, split: str, reverse: bool
) -> list[SequencePair]:
    """``count`` random sequences of symbols "0".."num_symbols-1" (joined by spaces), each with
    itself (or, with ``reverse``, itself reversed) as the target; seeded by ``seed`` and ``split``."""
    rng = random.Random(f"{seed}-{split}")
    name = "reverse" if reverse else "copy"
    pairs = []
    for i in range(count):
        symbols = [str(rng.randrange(num_symbols)) for _ in range(rng.randint(min_length, max_length))]
        target = symbols[::-1] if reverse else symbols
        pairs.append(SequencePair(" ".join(symbols), " ".join(target), f"{name}:{split}:{i}"))
    return pairs


class CopyDataModule(Seq2SeqDataModule):
    """``data=copy``: write the source sequence again (a generated task for tests and smoke runs).

    Sources are ``min_length`` .. ``max_length`` symbols (uniform) out of ``num_symbols``; both
    sides use the word tokenizer. ``generator_seed`` fixes the data, independent of the training seed.
    """

    reverse: ClassVar[bool] = False

    def __init__(
        self,
        num_symbols: int = 10,
        min_length: int = 1,
        max_length: int = 10,
        num_train: int = 5000,
        num_val: int = 500,
        num_test: int = 500,
        generator_seed: int = 0,
        **options: Any,
    ) -> None:
        super().__init__(source_tokenizer="word", target_tokenizer="word", **options)
        if num_symbols < 2:
            raise UserError(f"data.num_symbols must be >= 2; got {num_symbols}")
        if not 1 <= min_length <= max_length:
            raise UserError(
                "data.min_length and data.max_length need 1 <= min_length <= max_length; "
                f"got {min_length} and {max_length}"
            )
        self.sizes = {"train": num_train, "val": num_val, "test": num_test}
        self.generator = dict(
            num_symbols=num_symbols, min_length=min_length, max_length=max_length, seed=generator_seed
        )

    def read_split(self, split: str) -> list[SequencePair]:
        return generate_symbol_pairs(self.sizes[split], split=split, reverse=self.reverse, **self.generator)


class ReverseDataModule(CopyDataModule):
    """``data=reverse``: write the source sequence backwards (the first target symbol is the last
    source symbol, so an encoder-decoder needs no long-range memory to start)."""

    reverse: ClassVar[bool] = True
