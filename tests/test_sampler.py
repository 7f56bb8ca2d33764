from __future__ import annotations

import pickle
import random

import pytest
import torch

from rnnlab.data.sampler import BucketBatchSampler, padding_ratio
from rnnlab.errors import UserError


def _lognormal_lengths(n: int = 2000, seed: int = 0) -> list[int]:
    rng = random.Random(seed)
    return [max(1, round(rng.lognormvariate(3.0, 0.8))) for _ in range(n)]


LENGTHS = _lognormal_lengths()


def _flat(batches: list[list[int]]) -> list[int]:
    return [i for batch in batches for i in batch]


@pytest.mark.parametrize("shuffle", [True, False])
def test_every_index_exactly_once_and_len_matches(shuffle: bool) -> None:
    sampler = BucketBatchSampler(LENGTHS, batch_size=32, shuffle=shuffle, pool_size=10)
    batches = list(sampler)
    assert sorted(_flat(batches)) == list(range(len(LENGTHS)))
    assert len(batches) == len(sampler) == 63  # ceil(2000 / 32)
    assert sum(len(b) < 32 for b in batches) == 1


def test_batches_are_sorted_within_pools_and_padding_is_low() -> None:
    sampler = BucketBatchSampler(LENGTHS, batch_size=32, pool_size=50)
    bucketed = padding_ratio(sampler, LENGTHS)
    perm = torch.randperm(len(LENGTHS), generator=torch.Generator().manual_seed(1)).tolist()
    random_batches = [perm[i : i + 32] for i in range(0, len(perm), 32)]
    baseline = padding_ratio(random_batches, LENGTHS)
    assert baseline > 0.4  # the skewed lengths make random batches wasteful
    assert bucketed < baseline / 3


def test_same_seed_and_epoch_give_same_batches_and_epochs_differ() -> None:
    a = BucketBatchSampler(LENGTHS, batch_size=32, seed=3)
    b = BucketBatchSampler(LENGTHS, batch_size=32, seed=3)
    assert list(a) == list(b) == list(a)
    first = list(a)
    a.set_epoch(1)
    second = list(a)
    assert second != first
    assert sorted(_flat(second)) == list(range(len(LENGTHS)))
    assert list(BucketBatchSampler(LENGTHS, batch_size=32, seed=4)) != first


def test_shuffle_false_is_sorted_and_deterministic() -> None:
    lengths = [5, 1, 3, 1, 5, 2, 4]
    sampler = BucketBatchSampler(lengths, batch_size=3, shuffle=False)
    assert list(sampler) == [[1, 3, 5], [2, 6, 0], [4]]  # stable sort by length
    sampler.set_epoch(7)
    assert list(sampler) == [[1, 3, 5], [2, 6, 0], [4]]


def test_drop_last_drops_only_the_short_batch() -> None:
    for shuffle in (True, False):
        sampler = BucketBatchSampler(LENGTHS, batch_size=32, shuffle=shuffle, pool_size=7, drop_last=True)
        batches = list(sampler)
        assert len(batches) == len(sampler) == 2000 // 32
        assert all(len(b) == 32 for b in batches)
        assert len(set(_flat(batches))) == 62 * 32


@pytest.mark.parametrize(("replicas", "batch_size"), [(2, 32), (3, 30), (4, 32)])
def test_distributed_shards_are_disjoint_covering_and_equal(replicas: int, batch_size: int) -> None:
    """batch_size is global: every rank takes one share of each global batch, the shares of a full
    batch are equal, and the ranks together see every example exactly once (1000 examples: the
    short batch, 8 or 10 examples, splits as evenly as it can)."""
    lengths = LENGTHS[:1000]
    shards = []
    for rank in range(replicas):
        sampler = BucketBatchSampler(lengths, batch_size=batch_size, seed=5, num_replicas=replicas, rank=rank)
        sampler.set_epoch(2)
        shard = list(sampler)
        assert len(shard) == len(sampler) == -(-len(lengths) // batch_size)  # one share of every global batch
        shards.append(shard)
    for shares in zip(*shards):
        sizes = [len(share) for share in shares]
        assert max(sizes) - min(sizes) <= 1 and min(sizes) >= 1
    totals = sorted(sum(len(share) for share in shares) for shares in zip(*shards))
    assert totals == sorted([batch_size] * (len(lengths) // batch_size) + [len(lengths) % batch_size])
    assert sorted(_flat([b for s in shards for b in s])) == list(range(len(lengths)))


def test_distributed_batch_size_must_divide_among_processes() -> None:
    sampler = BucketBatchSampler(LENGTHS, batch_size=30, num_replicas=4, rank=0)
    with pytest.raises(UserError, match=r"data.batch_size=30 .*number of processes \(4\)"):
        list(sampler)
    with pytest.raises(UserError, match="data.batch_size=30"):
        len(sampler)
    # Evaluation batches need not divide: shares differ by at most one example.
    evaluation = BucketBatchSampler(LENGTHS[:70], batch_size=30, shuffle=False, num_replicas=4, rank=3)
    assert [len(b) for b in evaluation] == [7, 7, 2]


def test_distributed_short_training_batch_is_topped_up_and_evaluation_never_repeats() -> None:
    """A short last batch of 1 example among 2 ranks: training repeats it on both ranks (DDP needs
    every rank to step); evaluation gives it to rank 0 alone, rank 1 has one batch fewer."""
    lengths = [3, 1, 4, 1, 5]
    train = [BucketBatchSampler(lengths, batch_size=4, seed=0, num_replicas=2, rank=rank) for rank in (0, 1)]
    single = list(BucketBatchSampler(lengths, batch_size=4, seed=0))
    assert [len(s) for s in train] == [len(single)] * 2 == [2, 2]
    for whole, first, second in zip(single, *train):
        assert (first, second) == ((whole[0::2], whole[1::2]) if len(whole) > 1 else (whole, whole))
    evaluation = [BucketBatchSampler(lengths, batch_size=4, shuffle=False, num_replicas=2, rank=rank) for rank in (0, 1)]
    assert [list(s) for s in evaluation] == [[[1, 0], [4]], [[3, 2]]]
    assert [len(s) for s in evaluation] == [2, 1]
    with pytest.raises(UserError, match="evaluation split of 1 examples cannot be shared among 2 processes"):
        list(BucketBatchSampler([3], batch_size=4, shuffle=False, num_replicas=2, rank=1))


def test_single_replica_is_the_whole_epoch() -> None:
    sharded = BucketBatchSampler(LENGTHS, batch_size=32, num_replicas=1, rank=0)
    assert list(sharded) == list(BucketBatchSampler(LENGTHS, batch_size=32))


def test_invalid_arguments() -> None:
    with pytest.raises(UserError, match="data.batch_size"):
        BucketBatchSampler(LENGTHS, batch_size=0)
    with pytest.raises(UserError, match="data.batch_size"):
        BucketBatchSampler(LENGTHS, batch_size=2.5)  # type: ignore[arg-type]
    with pytest.raises(UserError, match="pool_size"):
        BucketBatchSampler(LENGTHS, batch_size=4, pool_size=0)
    with pytest.raises(ValueError):
        BucketBatchSampler(LENGTHS, batch_size=4, num_replicas=2, rank=2)


def test_padding_ratio() -> None:
    assert padding_ratio([[0, 1], [2]], [3, 1, 4]) == pytest.approx(2 / 10)
    assert padding_ratio([], [1]) == 0.0


def test_dataloader_and_lightning_epoch_hook() -> None:
    from lightning.fabric.utilities.data import _set_sampler_epoch

    sampler = BucketBatchSampler(LENGTHS[:100], batch_size=8, seed=1)
    loader = torch.utils.data.DataLoader(list(range(100)), batch_sampler=sampler)
    assert len(loader) == 13
    epoch0 = [b.tolist() for b in loader]
    _set_sampler_epoch(loader, 1)  # what Lightning's fit loop calls each epoch
    assert sampler.epoch == 1
    assert [b.tolist() for b in loader] != epoch0
    clone = pickle.loads(pickle.dumps(sampler))
    assert list(clone) == list(sampler)
