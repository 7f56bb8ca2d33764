"""Language modeling data (N vs N, the next token at each step): texts -> token ids, served as
sentences or as one stream.

``unit=sentence``: each line (a sentence, paragraph or document) is one sequence: inputs
``<bos> w1 .. wn``, targets ``w1 .. wn <eos>``, in length-bucketed batches as for every task.

``unit=stream``: a split is one token stream ``<eos> s1 <eos> s2 <eos> ...``, cut into
``batch_size`` contiguous rows and served ``bptt`` steps at a time, in order, so that row b of
batch i + 1 continues row b of batch i (PyTorch's word_language_model batching). The batch's
``extras["continues"]`` tells the task to start from the state where the previous batch ended
(truncated backpropagation through time). Evaluation streams too, in rows of ``eval_batch_size``:
each row starts from a zero state, so stream perplexities depend slightly on that size. The
rows are global: with several processes (DDP) each one reads its own contiguous block of the
same rows (:class:`StreamBatchSampler`).
A stream-trained model has seen every sentence start after an ``<eos>``, so its prompts start
with ``<eos>`` instead of ``<bos>`` (the spec's ``start_token``).

The vocabulary is fitted on the training split only (unknown tokens become ``<unk>``); with
``spec`` (from a checkpoint) nothing is refitted.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any, ClassVar

import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from rnnlab.batch import Batch
from rnnlab.data.bbc_news import BBCNewsDataModule
from rnnlab.data.brown import brown_split, locate_brown, read_brown
from rnnlab.data.collate import SequenceCollator
from rnnlab.data.datamodule import Example, SequenceDataModule
from rnnlab.data.readers import TextExample, read_utf8, split_lines
from rnnlab.data.sampler import world_size_and_rank
from rnnlab.data.splits import UserFileSplits, contiguous_split
from rnnlab.data.tokenizers import build_tokenizer
from rnnlab.data.vocab import Vocab, check_vocab_options
from rnnlab.errors import UserError, check_choice, data_error

UNITS: tuple[str, ...] = ("sentence", "stream")

#: A chunk of one stream row: (first input position, steps, continues the previous chunk)
Chunk = tuple[int, int, bool]


class TokenStream(Dataset):
    """A split as one stream of token ids (N,); a :data:`Chunk` key -> that chunk of one row:
    inputs ``ids[s : s + steps]``, targets ``ids[s + 1 : s + 1 + steps]``."""

    def __init__(self, ids: torch.Tensor) -> None:
        self.ids = ids

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, chunk: Chunk) -> Example:
        start, steps, continues = chunk
        return {
            "inputs": self.ids[start : start + steps],
            "target": self.ids[start + 1 : start + 1 + steps],
            "index": start,
            "continues": continues,
        }


class StreamBatchSampler(Sampler[list[Chunk]]):
    """Batches of chunks of a stream of ``num_tokens`` ids: ``rows`` contiguous rows of equal length
    ``L``, served ``bptt`` steps at a time in order (the last batch may be shorter; within a batch
    every row has the same length). A stream of N ids holds N - 1 (input, target) steps; the last
    (N - 1) mod rows of them are left out, as in the classic batchify. Fewer steps than rows: fewer rows.

    Distributed (R replicas, resolved at iteration time, as for
    :class:`~rnnlab.data.sampler.BucketBatchSampler`): ``rows`` is global. The stream is cut into
    the same ``rows`` rows as in one process and rank r reads its contiguous block of them, rows
    ``r * rows // R`` ... ``(r + 1) * rows // R - 1``; every rank serves the same number of
    batches. ``training=True``: ``rows`` (``data.batch_size``) must be divisible by R (else
    UserError), so the ranks hold equally many rows and DDP's average of their token-mean
    gradients is the single process's gradient (a stream too short for ``rows`` rows gets the
    largest multiple of R that fits). ``training=False`` (evaluation): the blocks may differ by
    one row (the task weights each rank's loss by its tokens, so the synced metrics are the single
    process's), but every rank needs a row: at least R rows and steps, else UserError.
    Like :class:`~rnnlab.data.sampler.BucketBatchSampler` it has no public ``batch_size`` (Lightning
    would try to rebuild it) and needs ``Trainer(use_distributed_sampler=False)``.
    """

    def __init__(
        self,
        num_tokens: int,
        rows: int,
        bptt: int,
        num_replicas: int | None = None,
        rank: int | None = None,
        training: bool = True,
    ) -> None:
        self.num_tokens = num_tokens
        self.rows = rows
        self.bptt = bptt
        self.num_replicas = num_replicas
        self.rank = rank
        self.training = training

    def layout(self) -> tuple[list[int], int]:
        """(first input position of each of this rank's rows, row length L)."""
        replicas, rank = world_size_and_rank(self.num_replicas, self.rank)
        if self.training and self.rows % replicas:
            raise UserError(
                f"data.batch_size={self.rows} stream rows are the global batch, split evenly across processes: "
                f"it must be divisible by the number of processes ({replicas})"
            )
        if self.rows < replicas:  # training: already caught as not divisible
            raise UserError(
                f"data.eval_batch_size={self.rows} stream rows cannot be shared among {replicas} processes: "
                "each needs at least one row"
            )
        steps = self.num_tokens - 1
        rows = min(self.rows, steps)
        if self.training:
            rows -= rows % replicas  # equal shares, even when a short stream caps the rows
        if rows < replicas:
            raise UserError(f"a stream of {self.num_tokens} tokens is too short to share among {replicas} processes")
        length = steps // rows
        mine = range(rank * rows // replicas, (rank + 1) * rows // replicas)
        return [row * length for row in mine], length

    def __iter__(self) -> Iterator[list[Chunk]]:
        starts, length = self.layout()
        for offset in range(0, length, self.bptt):
            steps = min(self.bptt, length - offset)
            yield [(start + offset, steps, offset > 0) for start in starts]

    def __len__(self) -> int:
        return math.ceil(self.layout()[1] / self.bptt)


class StreamCollator(SequenceCollator):
    """:class:`SequenceCollator` plus ``extras["continues"]`` (bool): True when row b of this batch
    continues row b of the previous batch, so the task should start from the state it left."""

    def __call__(self, examples: list[dict[str, Any]]) -> Batch:
        batch = super().__call__(examples)
        batch.extras["continues"] = bool(examples[0]["continues"])
        return batch


class LanguageModelDataModule(SequenceDataModule):
    """Base of every language modeling dataset. Subclasses implement :meth:`read_split`.

    Options: ``tokenizer`` (word | char), ``lowercase``, ``min_freq`` and ``max_vocab_size`` (the
    rest of the training tokens become ``<unk>``, so that the model learns ``<unk>`` for the unseen
    words of val and test), ``unit`` (sentence | stream, see the module doc), ``bptt`` (stream: steps
    per batch and the truncation length of backpropagation), ``max_length`` (sentence: steps per
    sequence; a longer sentence is cut, its end and ``<eos>`` dropped), ``test_file`` (a plain text
    file, one sentence or document per line, that replaces the test split).
    Corpora that come tokenized (``pretokenized``, e.g. Brown) keep their words at word level and
    split prompts on whitespace; at char level their words are joined with spaces.
    """

    pretokenized: ClassVar[bool] = False

    def __init__(
        self,
        tokenizer: str = "word",
        lowercase: bool = True,
        min_freq: int = 1,
        max_vocab_size: int | None = None,
        unit: str = "sentence",
        bptt: int = 35,
        max_length: int | None = None,
        test_file: str | None = None,
        spec: dict[str, Any] | None = None,
        **loader_options: Any,
    ) -> None:
        super().__init__(test_file=test_file, **loader_options)
        if spec is not None:
            unit, max_length = spec["unit"], spec["input"]["max_length"]
        check_choice("data.unit", unit, UNITS)
        if bptt < 1:
            raise UserError(f"data.bptt must be >= 1; got {bptt}")
        if max_length is not None and max_length < 1:
            raise UserError(f"data.max_length must be null or >= 1; got {max_length}")
        check_vocab_options(min_freq, max_vocab_size)
        self.min_freq = min_freq
        self.max_vocab_size = max_vocab_size
        self.unit = unit
        self.bptt = bptt
        self.max_length = max_length
        self.start_token = "<eos>" if unit == "stream" else "<bos>"
        if spec is not None:
            tokenizer, lowercase = spec["input"]["tokenizer"], spec["input"]["lowercase"]
            self.vocab = Vocab.from_dict(spec["input"]["vocab"])
            self.start_token = spec["start_token"]
        self.tokenizer_name = tokenizer
        self.lowercase = lowercase
        self.tokenizer = build_tokenizer(tokenizer, lowercase)

    # -- what subclasses provide ---------------------------------------------------------------

    def read_split(self, split: str) -> list[TextExample]:
        """The texts of ``split`` (train, val or test), one sentence, paragraph or document each (labels None)."""
        raise NotImplementedError

    def read_file(self, path: str) -> list[TextExample]:
        """A plain UTF-8 text file: its non-blank lines, one sentence or document each."""
        lines = text_lines(path, read_utf8(path))
        if not lines:
            raise data_error(path, None, "no text: expected one sentence or document per line")
        return lines

    # -- fitting and encoding ------------------------------------------------------------------

    @property
    def spec(self) -> dict[str, Any]:
        if self.vocab is None:
            raise RuntimeError("call setup('fit') before asking for the spec")
        return {
            "task": "language_modeling",
            "input": self.token_input_spec(self.tokenizer_name, self.lowercase, self.max_length),
            "unit": self.unit,
            "start_token": self.start_token,
        }

    def setup(self, stage: str | None = None) -> None:
        for split in self.pending_splits(stage):
            texts = [tokens for tokens in map(self.tokenize, self._read(split)) if tokens]
            if not texts:
                raise UserError(f"the {split} split is empty ({self._describe(split)})")
            if self.vocab is None:
                self.vocab = Vocab.build(texts, min_freq=self.min_freq, max_size=self.max_vocab_size)
            self.datasets[split] = self.encode_stream(texts) if self.unit == "stream" else self.encode_sentences(texts)

    def tokenize(self, text: TextExample | str) -> list[str]:
        text = text.text if isinstance(text, TextExample) else text
        if self.pretokenized and self.tokenizer_name == "word":
            return text.lower().split() if self.lowercase else text.split()
        return self.tokenizer.tokenize(text)

    def encode_sentences(self, texts: list[list[str]]) -> list[Example]:
        """Token lists -> inputs ``<start> w1 .. wn``, targets ``w1 .. wn <eos>`` (cut to ``max_length`` steps)."""
        assert self.vocab is not None
        start, eos = self.vocab.token_to_id(self.start_token), self.vocab.eos_id
        examples = []
        for index, tokens in enumerate(texts):
            ids = torch.tensor([start, *self.vocab.encode(tokens), eos], dtype=torch.long)
            if self.max_length is not None:
                ids = ids[: self.max_length + 1]
            examples.append({"inputs": ids[:-1], "target": ids[1:], "index": index})
        return examples

    def encode_stream(self, texts: list[list[str]]) -> TokenStream:
        """Token lists -> one stream ``<start> s1 <eos> s2 <eos> ...``."""
        assert self.vocab is not None
        ids = [self.vocab.token_to_id(self.start_token)]
        for tokens in texts:
            ids += self.vocab.encode(tokens)
            ids.append(self.vocab.eos_id)
        return TokenStream(torch.tensor(ids, dtype=torch.long))

    # -- batches -------------------------------------------------------------------------------

    def dataloader(self, split: str, shuffle: bool) -> DataLoader:
        """Stream splits in order, ``bptt`` steps per batch (see :class:`StreamBatchSampler`); else as the base."""
        data = self.datasets[split]
        if not isinstance(data, TokenStream):
            return super().dataloader(split, shuffle)
        rows = self.batch_size if shuffle else self.eval_batch_size
        return DataLoader(
            data,
            batch_sampler=StreamBatchSampler(len(data), rows, self.bptt, training=shuffle),
            collate_fn=StreamCollator(pad_id=self.pad_id),
            num_workers=self.num_workers,
            pin_memory=self.pin_memory,
            persistent_workers=self.num_workers > 0,
        )

    # -- prediction ----------------------------------------------------------------------------

    def load_predict_file(self, path: str) -> list[dict[str, Any]]:
        """Prompts, one per line, into the ``predict`` split as ``<start> + prompt tokens`` (an empty
        line: just the start token; unknown tokens -> ``<unk>``); returns ``{"prompt": line}`` per line."""
        assert self.vocab is not None
        lines = split_lines(read_utf8(path))
        if not lines:
            raise data_error(path, None, "empty file: expected one prompt per line (an empty line generates from scratch)")
        start = self.vocab.token_to_id(self.start_token)
        self.datasets["predict"] = [
            {"inputs": torch.tensor([start, *self.vocab.encode(self.tokenize(line))], dtype=torch.long), "index": index}
            for index, (_, line) in enumerate(lines)
        ]
        return [{"prompt": line} for _, line in lines]


def text_lines(path: str, text: str) -> list[TextExample]:
    """The non-blank lines of ``text`` (read from ``path``), each with its ``path:line``."""
    return [TextExample(line, None, f"{path}:{number}") for number, line in split_lines(text) if line.strip()]


class TextLMDataModule(LanguageModelDataModule):
    """``data=text_lm``: the user's plain UTF-8 text files, one sentence or document per line
    (blank lines are skipped).

    Without ``val_file`` / ``test_file`` those splits are cut from the end of ``train_file``:
    ``train | val | test`` as contiguous blocks of ``val_fraction`` / ``test_fraction`` of its
    lines, so that running text stays together (no shuffling; put held-out text last).
    """

    def __init__(
        self,
        train_file: str,
        val_file: str | None = None,
        test_file: str | None = None,
        val_fraction: float = 0.1,
        test_fraction: float = 0.1,
        **options: Any,
    ) -> None:
        super().__init__(test_file=test_file, **options)
        self.splits = UserFileSplits(
            train_file, val_file, test_file, val_fraction, test_fraction, read=self.read_file, carve=contiguous_split, unit="lines"
        )

    def read_split(self, split: str) -> list[TextExample]:
        return self.splits[split]

    def describe(self, split: str) -> str:
        return self.splits.describe(split)


class BBCNewsLMDataModule(LanguageModelDataModule):
    """``data=bbc_news_lm``: the BBC News articles (see :mod:`rnnlab.data.bbc_news`) as text.

    The split is the classifier's (``data=bbc_news``) document split, from the same
    ``val_fraction``, ``test_fraction`` and ``split_seed``: no article is in two splits. Each
    non-blank line of an article (its title, then one paragraph per line) is a unit.
    """

    def __init__(self, val_fraction: float = 0.1, test_fraction: float = 0.2, split_seed: int = 0, **options: Any) -> None:
        super().__init__(**options)
        # Reads and splits the articles exactly as the classifier does (and caches them).
        self.articles = BBCNewsDataModule(val_fraction=val_fraction, test_fraction=test_fraction, split_seed=split_seed)

    def read_split(self, split: str) -> list[TextExample]:
        return [line for article in self.articles.read_split(split) for line in text_lines(article.source, article.text)]


class BrownLMDataModule(LanguageModelDataModule):
    """``data=brown_lm``: the Brown corpus's sentences (its words as tokenized, tags dropped).

    Read from ``corpus_dir`` in NLTK's layout (fetch it once with ``python scripts/fetch_data.py
    brown``); the split is :func:`rnnlab.data.brown.brown_split`'s, by whole documents, the same
    as ``data=brown_pos``'s for the same ``split_seed``.
    """

    pretokenized = True

    def __init__(self, corpus_dir: str = "data/brown", split_seed: int = 0, **options: Any) -> None:
        super().__init__(**options)
        self.corpus_dir = corpus_dir
        self.split_seed = split_seed
        self._splits: dict[str, list[TextExample]] | None = None

    def read_split(self, split: str) -> list[TextExample]:
        if self._splits is None:
            splits = brown_split(read_brown(locate_brown(self.corpus_dir)), seed=self.split_seed)
            self._splits = {
                name: [TextExample(" ".join(s.tokens), None, s.source) for s in sentences] for name, sentences in splits.items()
            }
        return self._splits[split]
