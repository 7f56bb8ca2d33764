"""The LightningDataModule base: encoded splits -> length-bucketed, padded batches."""

from __future__ import annotations

from typing import Any, ClassVar

import lightning as L
from lightning.pytorch.utilities import rank_zero_warn
from torch.utils.data import DataLoader

from rnnlab.data.collate import SequenceCollator
from rnnlab.data.sampler import BucketBatchSampler, check_max_tokens, world_size_and_rank
from rnnlab.data.splits import UserFileSplits
from rnnlab.data.vocab import Vocab
from rnnlab.errors import UserError

#: The splits each Lightning stage reads.
SPLITS_FOR_STAGE = {"fit": ("train", "val"), "validate": ("val",), "test": ("test",), "predict": ()}

#: An encoded example: {"inputs": (T,) ids or (T, F) floats, "target": ..., "index": int}
Example = dict[str, Any]


class SequenceDataModule(L.LightningDataModule):
    """Holds encoded examples per split and serves them as :class:`~rnnlab.batch.Batch` es.

    Training batches come from :class:`BucketBatchSampler` (``bucketing=True``, the default):
    similar lengths share a batch, so little compute goes to padding. Evaluation batches are
    sorted by length; predictions carry each example's ``index`` so callers restore input order.
    ``batch_size`` (and ``eval_batch_size``) are global: under DDP each of R processes gets its
    share of every batch (see :class:`BucketBatchSampler`), so a run on R processes takes the
    same optimisation steps as one process with the same batch size.
    ``max_tokens`` (null: off) cuts batches by a token budget instead, with ``batch_size`` /
    ``eval_batch_size`` as a cap on examples per batch (see :class:`BucketBatchSampler`).
    Subclasses fill ``self.datasets`` in ``setup`` (reading each split with :meth:`read_split`,
    or ``test_file`` with :meth:`read_file`), fit ``self.vocab`` on the training split, and
    describe the model's input in ``spec``.
    """

    def __init__(
        self,
        batch_size: int = 32,
        eval_batch_size: int | None = None,
        num_workers: int = 0,
        bucketing: bool = True,
        bucket_pool_size: int = 200,
        seed: int = 0,
        pin_memory: bool = False,
        test_file: str | None = None,
        max_tokens: int | None = None,
    ) -> None:
        super().__init__()
        if batch_size < 1:
            raise UserError(f"data.batch_size must be >= 1; got {batch_size}")
        if num_workers < 0:
            raise UserError(f"data.num_workers must be >= 0; got {num_workers}")
        check_max_tokens(max_tokens)
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size or batch_size
        self.num_workers = num_workers
        self.bucketing = bucketing
        self.bucket_pool_size = bucket_pool_size
        self.max_tokens = max_tokens
        self.seed = seed
        self.pin_memory = pin_memory
        self.test_file = test_file
        self.vocab: Vocab | None = None
        self.datasets: dict[str, list[Example]] = {}
        # (epoch, batches already trained) for the next training loader: a run resumed mid-epoch.
        self._resume_position: tuple[int, int] | None = None

    @property
    def spec(self) -> dict[str, Any]:
        """Plain, JSON-able description of inputs and targets that sizes (and travels with) the model."""
        raise NotImplementedError

    def token_input_spec(self, tokenizer: str, lowercase: bool, max_length: int | None) -> dict[str, Any]:
        """The ``spec["input"]`` of token-id inputs: the fitted vocabulary and how texts become tokens."""
        if self.vocab is None:
            raise RuntimeError("call setup('fit') before asking for the spec")
        return {
            "kind": "tokens",
            "vocab_size": len(self.vocab),
            "pad_id": self.vocab.pad_id,
            "vocab": self.vocab.to_dict(),
            "tokenizer": tokenizer,
            "lowercase": lowercase,
            "max_length": max_length,
        }

    @property
    def pad_id(self) -> int:
        return self.vocab.pad_id if self.vocab is not None else 0

    # -- reading splits ------------------------------------------------------------------------

    def read_split(self, split: str) -> list[Any]:
        """The raw examples of ``split`` (train, val or test) from the dataset itself."""
        raise NotImplementedError

    def read_file(self, path: str) -> list[Any]:
        """A user file in this dataset's format (for ``test_file``)."""
        raise NotImplementedError

    def describe(self, split: str) -> str:
        """Where ``split`` comes from, for the message about an empty split."""
        return type(self).__name__

    def _read(self, split: str) -> list[Any]:
        if split == "test" and self.test_file is not None:
            return self.read_file(self.test_file)
        return self.read_split(split)

    def _describe(self, split: str) -> str:
        return f"file {self.test_file}" if split == "test" and self.test_file else self.describe(split)

    @property
    def fitted(self) -> bool:
        """Whether the vocabulary (and whatever else comes from the training split) is fitted."""
        return self.vocab is not None

    def pending_splits(self, stage: str | None) -> list[str]:
        """The splits ``stage`` needs (all for None) that are not encoded yet; train first while
        nothing is fitted, since the vocabulary comes from it."""
        splits = SPLITS_FOR_STAGE[stage] if stage else ("train", "val", "test")
        if not self.fitted:
            splits = ("train", *splits)
        return [split for split in dict.fromkeys(splits) if split not in self.datasets]

    def collator(self) -> SequenceCollator:
        return SequenceCollator(pad_id=self.pad_id)

    def dataloader(self, split: str, shuffle: bool) -> DataLoader:
        """Batches of split ``split``; ``shuffle`` for training order, else sorted by length."""
        examples = self.datasets[split]
        batch_size = self.batch_size if shuffle else self.eval_batch_size
        common = dict(
            collate_fn=self.collator(),
            num_workers=self.num_workers,
            pin_memory=self.pin_memory,
            persistent_workers=self.num_workers > 0,
        )
        pool_size, sort_pools = self.bucket_pool_size, True
        if shuffle and not self.bucketing:
            if self.max_tokens is not None:
                sort_pools = False  # random batches, each cut to the token budget
            elif world_size_and_rank()[0] == 1:
                return DataLoader(examples, batch_size=batch_size, shuffle=True, **common)
            else:
                # Under DDP a plain shuffled loader would feed every rank the whole split; pools of one
                # batch give random (unbucketed) global batches that the sampler shares among ranks.
                pool_size = 1
        sampler = BucketBatchSampler(
            [len(example["inputs"]) for example in examples],
            batch_size,
            shuffle=shuffle,
            pool_size=pool_size,
            seed=self.seed,
            max_tokens=self.max_tokens,
            sort_pools=sort_pools,
        )
        return DataLoader(examples, batch_sampler=sampler, **common)

    def resume_training_at(self, epoch: int, batches_done: int) -> None:
        """Start the next training loader at batch ``batches_done`` of epoch ``epoch``'s order (a
        run resumed mid-epoch: rnnlab.callbacks.resume). Applied before any batch is drawn, even
        by DataLoader workers that prefetch when the loader's iterator is created."""
        self._resume_position = (epoch, batches_done)

    def train_dataloader(self) -> DataLoader:
        loader = self.dataloader("train", shuffle=True)
        if isinstance(loader.batch_sampler, BucketBatchSampler) and loader.batch_sampler.max_tokens is not None:
            self._reload_every_epoch(loader.batch_sampler)
        if self._resume_position is not None:
            epoch, done = self._resume_position
            self._resume_position = None
            if not isinstance(loader.batch_sampler, BucketBatchSampler):
                rank_zero_warn("this training loader cannot skip batches: the resumed epoch starts again from its first batch")
                return loader
            loader.batch_sampler.set_epoch(epoch)
            loader.batch_sampler.skip_batches = done
        return loader

    def _reload_every_epoch(self, sampler: BucketBatchSampler) -> None:
        """Under a token budget the number of training batches changes from epoch to epoch, but
        Lightning reads ``len`` of the training loader only when it loads it: an epoch with fewer
        batches would skip its validation (Lightning validates after that many batches) and one with
        more would be cut short. So the trainer reloads this loader every epoch, and a new loader
        starts at the trainer's epoch, making its ``len`` that epoch's."""
        trainer = self.trainer
        if trainer is None:
            return
        sampler.set_epoch(trainer.current_epoch)
        trainer.reload_dataloaders_every_n_epochs = 1

    def val_dataloader(self) -> DataLoader:
        return self.dataloader("val", shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self.dataloader("test", shuffle=False)

    def predict_dataloader(self) -> DataLoader:
        return self.dataloader("predict", shuffle=False)


class UserFilesMixin:
    """For data modules over the user's own files (put it before the data module base):
    ``train_file`` with optional ``val_file`` / ``test_file``; without them those splits are carved
    out of the training file by ``val_fraction`` / ``test_fraction`` with :meth:`carve` (seeded by
    ``split_seed``). ``unit`` names the file's rows in messages. See :class:`UserFileSplits`.
    """

    unit: ClassVar[str] = "rows"

    def __init__(
        self,
        train_file: str,
        val_file: str | None = None,
        test_file: str | None = None,
        val_fraction: float = 0.1,
        test_fraction: float = 0.1,
        split_seed: int = 0,
        **options: Any,
    ) -> None:
        super().__init__(test_file=test_file, **options)
        self.split_seed = split_seed
        self.splits = UserFileSplits(
            train_file, val_file, test_file, val_fraction, test_fraction, read=self.read_file, carve=self.carve, unit=self.unit
        )

    def carve(self, rows: list[Any], fractions: dict[str, float]) -> dict[str, list[Any]]:
        """Split the training file's rows into train plus the parts named in ``fractions``."""
        raise NotImplementedError

    def read_split(self, split: str) -> list[Any]:
        return self.splits[split]

    def describe(self, split: str) -> str:
        return self.splits.describe(split)
