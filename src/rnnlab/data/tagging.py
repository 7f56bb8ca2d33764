"""Sequence labelling data: tagged sentences -> word ids, character ids and tag ids.

The word vocabulary, character vocabulary and tag set are fitted on the training split only
(built-in corpora take their tag inventory from every split: it is part of the task, not a
statistic of the training data). With ``spec`` (from a checkpoint) nothing is refitted.
"""

from __future__ import annotations

from collections import Counter
from typing import Any, ClassVar

import torch

from rnnlab.data.brown import brown_split, locate_brown, read_brown
from rnnlab.data.conll import TaggedSentence, read_conll_file, read_token_lines
from rnnlab.data.datamodule import Example, SequenceDataModule, UserFilesMixin
from rnnlab.data.splits import stratified_split
from rnnlab.data.vocab import LabelSet, Vocab, check_vocab_options
from rnnlab.errors import UserError, check_choice
from rnnlab.tag_schemes import SCHEMES, detect_scheme, first_violation, split_tag

#: ``data.scheme``: null detects it from the training tags; "none" means the tags form no spans.
SCHEME_CHOICES = (None, "none", *SCHEMES)


def truncate_word(chars: str, max_chars: int) -> str:
    """Keep a word's first and last characters (prefixes and suffixes carry its morphology)."""
    if len(chars) <= max_chars:
        return chars
    head = (max_chars + 1) // 2
    return chars[:head] + chars[len(chars) - (max_chars - head) :]


class TaggingDataModule(SequenceDataModule):
    """Base of every sequence labelling dataset. Subclasses implement :meth:`read_split`.

    Options: ``lowercase`` (word ids only; characters keep their case), ``min_freq`` (training
    words seen fewer times become ``<unk>``: the default 2 makes the ``<unk>`` embedding learn
    from the training singletons, as unseen words at test time will need), ``max_vocab_size``,
    ``chars`` (also serve each token's character ids, for a character-level word encoder),
    ``max_word_length`` (longer words keep their first and last characters), ``scheme``
    (``data.scheme``: null detects IOB1/IOB2/BIOES spans from the tags, "none" for tags without
    spans such as POS), ``test_file`` (a CoNLL file that replaces the test split, read with
    ``token_column`` / ``tag_column``).
    """

    tags_from_all_splits: ClassVar[bool] = False

    def __init__(
        self,
        lowercase: bool = False,
        min_freq: int = 2,
        max_vocab_size: int | None = None,
        chars: bool = False,
        max_word_length: int = 30,
        scheme: str | None = None,
        test_file: str | None = None,
        token_column: int = 0,
        tag_column: int = -1,
        spec: dict[str, Any] | None = None,
        **loader_options: Any,
    ) -> None:
        super().__init__(test_file=test_file, **loader_options)
        check_choice("data.scheme", scheme, SCHEME_CHOICES)
        check_vocab_options(min_freq, max_vocab_size)
        if max_word_length < 1:
            raise UserError(f"data.max_word_length must be >= 1; got {max_word_length}")
        self.min_freq = min_freq
        self.max_vocab_size = max_vocab_size
        self.token_column = token_column
        self.tag_column = tag_column
        self.scheme_option = scheme
        self.lowercase = lowercase
        self.chars = chars
        self.max_word_length = max_word_length
        self.char_vocab: Vocab | None = None
        self.tags: LabelSet | None = None
        self.tag_counts: list[int] = []
        self.scheme: str | None = None
        if spec is not None:
            self.lowercase = spec["input"]["lowercase"]
            self.vocab = Vocab.from_dict(spec["input"]["vocab"])
            self.tags = LabelSet.from_dict(spec["labels"])
            self.tag_counts = list(spec["label_counts"])
            self.scheme = spec["scheme"]
            self.chars = spec["chars"] is not None
            if self.chars:
                self.char_vocab = Vocab.from_dict(spec["chars"]["vocab"])
                self.max_word_length = spec["chars"]["max_word_length"]

    # -- what subclasses provide ---------------------------------------------------------------

    def read_split(self, split: str) -> list[TaggedSentence]:
        """Tagged sentences of ``split`` (train, val or test)."""
        raise NotImplementedError

    # -- fitting and encoding ------------------------------------------------------------------

    @property
    def spec(self) -> dict[str, Any]:
        if self.vocab is None or self.tags is None:
            raise RuntimeError("call setup('fit') before asking for the spec")
        chars = None
        if self.char_vocab is not None:
            chars = {"vocab": self.char_vocab.to_dict(), "vocab_size": len(self.char_vocab), "max_word_length": self.max_word_length}
        return {
            "task": "tagging",
            "input": self.token_input_spec("whitespace", self.lowercase, None),
            "labels": self.tags.to_dict(),
            "label_counts": self.tag_counts,
            "scheme": self.scheme,
            "chars": chars,
        }

    def setup(self, stage: str | None = None) -> None:
        read: dict[str, list[TaggedSentence]] = {}
        for split in self.pending_splits(stage):
            read[split] = self._read(split)
            if not read[split]:
                raise UserError(f"the {split} split is empty ({self._describe(split)})")
        if self.vocab is None:
            # The corpus's own splits define its tag inventory; a user's test_file must not add to it.
            inventory = [s for split in ("train", "val", "test") for s in self.read_split(split)] if self.tags_from_all_splits else read["train"]
            self._fit(read["train"], inventory)
        for split, sentences in read.items():
            self.datasets[split] = self.encode(sentences)

    def read_file(self, path: str) -> list[TaggedSentence]:
        """A user CoNLL file, read with this module's ``token_column`` and ``tag_column``."""
        return read_conll_file(path, self.token_column, self.tag_column)

    def _fit(self, train: list[TaggedSentence], inventory: list[TaggedSentence]) -> None:
        self.vocab = Vocab.build(
            (self._words(s.tokens) for s in train), min_freq=self.min_freq, max_size=self.max_vocab_size
        )
        if self.chars:
            self.char_vocab = Vocab.build(list(token) for s in train for token in s.tokens)
        counts = Counter(tag for s in train for tag in s.tags or ())
        self.tags = LabelSet.build({tag for s in inventory for tag in s.tags or ()})
        self.tag_counts = [counts[tag] for tag in self.tags.labels]
        self.scheme = self._resolve_scheme(self.tags.labels, train)

    def _resolve_scheme(self, tags: list[str], train: list[TaggedSentence]) -> str | None:
        """``data.scheme``, or the scheme detected from the tag set and the training sentences, checked
        against every training sentence (a CRF constrained to a wrong scheme could not fit the data)."""
        if self.scheme_option == "none":
            return None
        if self.scheme_option is None:
            scheme = detect_scheme(tags)
            # A tag set with B- tags is IOB2, or IOB1 (CoNLL-2003's original files) where spans start
            # with I- and B- only separates adjacent spans of one type: the sentences tell.
            if scheme == "IOB2" and _first_violation(train, "IOB2") and not _first_violation(train, "IOB1"):
                scheme = "IOB1"
        else:
            scheme = self.scheme_option
            bad = [tag for tag in tags if split_tag(tag, scheme) is None]
            if bad:
                raise UserError(
                    f"data.scheme={scheme} does not fit the training tags {', '.join(bad[:5])}; "
                    f"use data.scheme=null to detect it or data.scheme=none for tags without spans"
                )
        violation = _first_violation(train, scheme) if scheme else None
        if violation:
            sentence, position = violation
            before = sentence.tags[position - 1] if position else "the sentence start"
            raise UserError(
                f"{sentence.source}: token {position + 1} ({sentence.tokens[position]!r}) has tag "
                f"{sentence.tags[position]!r} after {before}, which {scheme} does not allow; set data.scheme "
                f"to your files' scheme (IOB1, IOB2, BIOES) or data.scheme=none to read the tags as plain labels"
            )
        return scheme

    def _words(self, tokens: tuple[str, ...] | list[str]) -> list[str]:
        return [token.lower() for token in tokens] if self.lowercase else list(tokens)

    def encode(self, sentences: list[TaggedSentence], with_tags: bool = True) -> list[Example]:
        """Tokens -> word ids (unknown -> <unk>) and, with ``chars``, character ids; tags -> tag ids."""
        assert self.vocab is not None and self.tags is not None
        encoded = []
        for index, sentence in enumerate(sentences):
            item: Example = {"inputs": torch.tensor(self.vocab.encode(self._words(sentence.tokens)), dtype=torch.long), "index": index}
            if self.char_vocab is not None:
                item.update(self._encode_chars(sentence.tokens))
            if with_tags:
                unseen = [position for position, tag in enumerate(sentence.tags or ()) if tag not in self.tags]
                if unseen:
                    raise UserError(
                        f"{sentence.source}: token {unseen[0] + 1} has tag {sentence.tags[unseen[0]]!r}, which never "
                        f"occurs in the training data (training tags: {', '.join(self.tags.labels)})"
                    )
                item["target"] = torch.tensor([self.tags.encode(tag) for tag in sentence.tags or ()], dtype=torch.long)
            encoded.append(item)
        return encoded

    def _encode_chars(self, tokens: tuple[str, ...] | list[str]) -> dict[str, torch.Tensor]:
        """-> ``chars`` (T, W) 0-padded character ids and ``char_lengths`` (T,)."""
        assert self.char_vocab is not None
        words = [truncate_word(token, self.max_word_length) for token in tokens]
        chars = torch.zeros(len(words), max(map(len, words)), dtype=torch.long)
        for position, word in enumerate(words):
            chars[position, : len(word)] = torch.tensor(self.char_vocab.encode(word), dtype=torch.long)
        return {"chars": chars, "char_lengths": torch.tensor([len(word) for word in words], dtype=torch.long)}

    def load_predict_file(self, path: str) -> list[dict[str, Any]]:
        """Sentences to tag, one per line, tokens separated by spaces -> ``{"tokens": [...]}`` per line."""
        lines = read_token_lines(path)
        sentences = [TaggedSentence(tuple(tokens), None, f"{path}:{line}") for line, tokens in lines]
        self.datasets["predict"] = self.encode(sentences, with_tags=False)
        return [{"tokens": list(sentence.tokens)} for sentence in sentences]


def _one_stratum(sentence: TaggedSentence) -> str:
    return ""


def _words_and_tags(sentence: TaggedSentence) -> tuple[tuple[str, ...], tuple[str, ...] | None]:
    return sentence.tokens, sentence.tags


def _first_violation(sentences: list[TaggedSentence], scheme: str) -> tuple[TaggedSentence, int] | None:
    """The first sentence whose tags break ``scheme``, with the position of the offending tag."""
    for sentence in sentences:
        position = first_violation(sentence.tags or (), scheme)
        if position is not None:
            return sentence, position
    return None


class ConllDataModule(UserFilesMixin, TaggingDataModule):
    """``data=conll``: the user's CoNLL files (a token and a tag column, blank line between sentences).

    Without ``val_file`` / ``test_file`` those splits are carved out of ``train_file`` by
    ``val_fraction`` / ``test_fraction`` (whole sentences, seeded by ``split_seed``; identical
    sentences stay in one split).
    """

    unit: ClassVar[str] = "sentences"

    def carve(self, sentences: list[TaggedSentence], fractions: dict[str, float]) -> dict[str, list[TaggedSentence]]:
        """Whole sentences at random (seeded); identical sentences stay in one part."""
        return stratified_split(sentences, fractions, self.split_seed, label_of=_one_stratum, group_of=_words_and_tags)


class BrownPOSDataModule(TaggingDataModule):
    """``data=brown_pos``: part-of-speech tagging on the Brown corpus (57,340 sentences).

    Read from ``corpus_dir`` in NLTK's layout (fetch it once with
    ``python scripts/fetch_data.py brown``); ``tagset`` simplifies the tags (see
    :func:`rnnlab.data.brown.read_brown`); the split is :func:`rnnlab.data.brown.brown_split`'s
    fixed document-level split.
    """

    tags_from_all_splits = True

    def __init__(self, corpus_dir: str = "data/brown", tagset: str = "universal", split_seed: int = 0, **options: Any) -> None:
        super().__init__(**options)
        self.corpus_dir = corpus_dir
        self.tagset = tagset
        self.split_seed = split_seed
        self._splits: dict[str, list[TaggedSentence]] | None = None

    def read_split(self, split: str) -> list[TaggedSentence]:
        if self._splits is None:
            self._splits = brown_split(read_brown(locate_brown(self.corpus_dir), self.tagset), seed=self.split_seed)
        return self._splits[split]
