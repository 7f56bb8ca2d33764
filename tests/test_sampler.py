from __future__ import annotations

import pickle
import random
from collections.abc import Iterator
from typing import Any

import pytest
import torch

import rnnlab.data.sampler as sampler_module
from rnnlab.data.sampler import BucketBatchSampler, cut_by_tokens, padding_ratio
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


# -- token budgets (max_tokens) ----------------------------------------------------------------


def _padded_tokens(batch: list[int], lengths: list[int]) -> int:
    return len(batch) * max(lengths[i] for i in batch)


def _check_budget(batches: list[list[int]], lengths: list[int], max_tokens: int, cap: int, least: int = 1) -> None:
    """Every batch fits the budget and the cap, or is the smallest allowed batch (one over-long
    example; ``least`` examples under DDP)."""
    for batch in batches:
        assert 1 <= len(batch) <= cap
        assert _padded_tokens(batch, lengths) <= max_tokens or len(batch) <= least, batch


def _cuts(n: int) -> Iterator[list[int]]:
    """Every way to cut n items in order: the sizes of the batches."""
    if n == 0:
        yield []
        return
    for first in range(1, n + 1):
        for rest in _cuts(n - first):
            yield [first, *rest]


@pytest.mark.parametrize("batch_cost", [0, 3, 256])
@pytest.mark.parametrize(("step", "least"), [(1, 1), (2, 2), (1, 3)])
@pytest.mark.parametrize("seed", range(6))
def test_cut_by_tokens_is_the_cheapest_allowed_cut(seed: int, step: int, least: int, batch_cost: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """Against brute force over every cut of up to 9 examples (sorted or not): the batches are
    allowed (budget, cap, least + a multiple of step, the over-budget least-batch, the short
    remainder last) and no allowed cut computes fewer padded tokens plus the per-batch cost."""
    monkeypatch.setattr(sampler_module, "BATCH_COST_SHARE", 0.0)
    monkeypatch.setattr(sampler_module, "BATCH_COST_LEAST", batch_cost)
    rng = random.Random(seed)
    lengths = [rng.randint(1, 12) for _ in range(rng.randint(1, 9))]
    indices = list(range(len(lengths))) if seed % 2 else sorted(range(len(lengths)), key=lengths.__getitem__)
    max_tokens, cap = rng.randint(8, 30), rng.randint(3, 6)
    cap -= cap % step

    def allowed(sizes: list[int]) -> bool:
        start = 0
        for number, size in enumerate(sizes):
            longest = max(lengths[i] for i in indices[start : start + size])
            last = number == len(sizes) - 1
            shaped = size >= least and (size - least) % step == 0 and size <= cap
            if not ((shaped and (size * longest <= max_tokens or size == least)) or (last and size < least)):
                return False
            start += size
        return True

    def cost(sizes: list[int]) -> float:
        batches, start = [], 0
        for size in sizes:
            batches.append(indices[start : start + size])
            start += size
        return sum(_padded_tokens(b, lengths) for b in batches) + len(batches) * batch_cost

    got = cut_by_tokens(indices, lengths, max_tokens, cap, step=step, least=least)
    sizes = [len(batch) for batch in got]
    assert _flat(got) == indices and allowed(sizes)
    assert cost(sizes) == pytest.approx(min(cost(c) for c in _cuts(len(indices)) if allowed(c)))


def test_token_budget_cuts_a_long_tail_tighter_than_greedy_cutting() -> None:
    """Whole-article-like lengths (log-normal, 100 to 5,000 steps): filling each batch in turn
    pads its last examples to a much longer one; the cheapest cut pads under 3 %."""
    rng = random.Random(1)
    lengths = sorted(min(5000, max(100, round(rng.lognormvariate(6.0, 0.6)))) for _ in range(1800))
    order = list(range(len(lengths)))
    greedy, start = [], 0
    while start < len(order):
        end = start + 1
        while end < len(order) and end - start < 256 and (end - start + 1) * lengths[end] <= 40000:
            end += 1
        greedy.append(order[start:end])
        start = end
    cut = cut_by_tokens(order, lengths, 40000, 256)
    assert padding_ratio(greedy, lengths) > 0.05
    assert padding_ratio(cut, lengths) <= 0.03
    assert len(cut) < 2 * len(greedy)


@pytest.mark.parametrize("shuffle", [True, False])
def test_token_budget_respected_with_cap_and_every_index_once(shuffle: bool) -> None:
    lengths = LENGTHS[:1000] + [700, 900]  # two examples longer than the budget
    sampler = BucketBatchSampler(lengths, batch_size=48, shuffle=shuffle, max_tokens=600, pool_size=10, seed=1)
    for epoch in range(3):
        sampler.set_epoch(epoch)
        batches = list(sampler)
        assert len(batches) == len(sampler)
        assert sorted(_flat(batches)) == list(range(len(lengths)))
        _check_budget(batches, lengths, 600, cap=48)
        assert [1000] in batches and [1001] in batches  # over-long: alone, never dropped
        assert max(map(len, batches)) == 48  # the cap binds for the shortest examples


@pytest.mark.parametrize("shuffle", [True, False])
def test_token_budget_gives_short_sequences_bigger_batches(shuffle: bool) -> None:
    lengths = [5] * 100 + [50] * 20
    random.Random(0).shuffle(lengths)
    batches = list(BucketBatchSampler(lengths, batch_size=64, shuffle=shuffle, max_tokens=100, pool_size=4))
    assert sorted(_flat(batches)) == list(range(120))
    short = [b for b in batches if max(lengths[i] for i in b) == 5]
    long = [b for b in batches if max(lengths[i] for i in b) == 50]
    assert all(len(b) <= 20 for b in short) and all(len(b) <= 2 for b in long)
    assert [len(b) for b in short].count(20) == 5 and [len(b) for b in long].count(2) == 10


def test_token_budget_is_deterministic_per_seed_and_epoch_and_len_is_cached(monkeypatch: pytest.MonkeyPatch) -> None:
    options = dict(batch_size=64, max_tokens=800, pool_size=5)
    a, b = BucketBatchSampler(LENGTHS, seed=3, **options), BucketBatchSampler(LENGTHS, seed=3, **options)
    epochs = []
    for epoch in range(4):
        a.set_epoch(epoch)
        b.set_epoch(epoch)
        batches = list(a)
        assert batches == list(b) == list(a)
        assert len(a) == len(batches) and sorted(_flat(batches)) == list(range(len(LENGTHS)))
        epochs.append(batches)
    assert all(epochs[0] != other for other in epochs[1:])
    assert list(BucketBatchSampler(LENGTHS, seed=4, **options)) != epochs[0]
    cuts = []
    original = sampler_module.cut_by_tokens
    monkeypatch.setattr(sampler_module, "cut_by_tokens", lambda *args, **kw: cuts.append(1) or original(*args, **kw))
    a.set_epoch(7)
    length = len(a)
    calls = len(cuts)
    assert calls > 0
    assert [len(a) for _ in range(5)] == [length] * 5 and len(list(a)) == length
    assert len(cuts) == calls  # len and iteration of one epoch share one computation
    a.set_epoch(0)
    assert list(a) == epochs[0]


@pytest.mark.parametrize("replicas", [2, 3])
def test_token_budget_under_replicas_equal_shares_and_len_per_rank(replicas: int) -> None:
    """Training: every global batch is a multiple of R examples (>= R) split into equal shares,
    one batch of the 1000 % R left-over examples is topped up; evaluation: nothing repeated, len
    differs by at most one between ranks. len is what each rank yields, epoch after epoch."""
    lengths = LENGTHS[:1000]
    for shuffle in (True, False):
        options = dict(batch_size=48, shuffle=shuffle, max_tokens=500, pool_size=4, seed=2, num_replicas=replicas)
        samplers = [BucketBatchSampler(lengths, rank=rank, **options) for rank in range(replicas)]
        for epoch in range(3):
            shards = []
            for sampler in samplers:
                sampler.set_epoch(epoch)
                shard = list(sampler)
                assert len(shard) == len(sampler)
                shards.append(shard)
            if shuffle:
                assert len({len(shard) for shard in shards}) == 1
                short = 0
                for shares in zip(*shards):
                    assert len({len(share) for share in shares}) == 1  # equal shares
                    whole = [i for step in zip(*shares) for i in step]
                    if len(set(whole)) < replicas:
                        short += 1  # the left-over examples, topped up by repetition
                    else:
                        _check_budget([whole], lengths, 500, cap=48, least=replicas)
                assert short == (1 if len(lengths) % replicas else 0)
                assert sorted(set(_flat([b for s in shards for b in s]))) == list(range(len(lengths)))
            else:
                assert max(map(len, shards)) - min(map(len, shards)) <= 1
                assert sorted(_flat([b for s in shards for b in s])) == list(range(len(lengths)))


def test_token_budget_skip_batches_resumes_at_the_right_batch() -> None:
    for replicas, rank in ((1, 0), (2, 1)):
        options = dict(batch_size=32, max_tokens=400, pool_size=3, seed=9, num_replicas=replicas, rank=rank)
        reference = BucketBatchSampler(LENGTHS, **options)
        reference.set_epoch(2)
        whole = list(reference)
        resumed = BucketBatchSampler(LENGTHS, **options)  # a new process: nothing cached
        resumed.set_epoch(2)
        resumed.skip_batches = 7
        assert list(resumed) == whole[7:]
        assert list(resumed) == whole  # the skip applies to one iteration only


def test_token_budget_drop_last_drops_only_the_left_over_batch_under_replicas() -> None:
    lengths = LENGTHS[:1000]
    single = BucketBatchSampler(lengths, batch_size=32, max_tokens=400, drop_last=True, seed=1)
    assert list(single) == list(BucketBatchSampler(lengths, batch_size=32, max_tokens=400, seed=1))  # nothing to drop
    shards = [
        list(BucketBatchSampler(lengths, batch_size=33, max_tokens=400, drop_last=True, seed=1, num_replicas=3, rank=r))
        for r in range(3)
    ]
    flat = _flat([b for s in shards for b in s])
    assert len(flat) == len(set(flat)) == 999  # 1000 % 3: one example left out, none repeated


def test_default_pools_keep_fixed_size_batches_under_three_percent_padding() -> None:
    """Sentence-like lengths (log-normal, median 18, long tail; Brown's are similar): fixed-size
    batches from the default pools pad under 3 % in every epoch, where pools of 50 pad 5.8 %."""
    rng = random.Random(0)
    lengths = [min(400, max(1, round(rng.lognormvariate(2.9, 0.5)))) for _ in range(20000)]
    assert padding_ratio(BucketBatchSampler(lengths, batch_size=32, pool_size=50, seed=0), lengths) > 0.05
    sampler = BucketBatchSampler(lengths, batch_size=32, seed=0)
    for epoch in range(3):
        sampler.set_epoch(epoch)
        assert padding_ratio(sampler, lengths) <= 0.03, epoch


def test_token_budget_padding_on_lognormal_lengths() -> None:
    """Budget batches from pools of 50 batches keep padding <= 3 % on skewed lengths where
    fixed-size batches from the same pools pad 11 %. How tight the buckets are depends on how
    many batches a pool holds (pool_size * batch_size examples): a cap of 32 with a budget of about
    32 * the mean length pads 3.2-3.5 % with pools of 50, 1.8 % with pool_size=100."""
    rng = random.Random(0)
    lengths = [min(400, max(1, round(rng.lognormvariate(3.0, 0.8)))) for _ in range(5000)]
    fixed = padding_ratio(BucketBatchSampler(lengths, batch_size=32, pool_size=50, seed=0), lengths)
    assert fixed > 0.1
    for batch_size, max_tokens, pool_size in ((64, 1000, 50), (32, 500, 50), (32, 1000, 100)):
        sampler = BucketBatchSampler(lengths, batch_size=batch_size, max_tokens=max_tokens, pool_size=pool_size, seed=0)
        for epoch in range(3):
            sampler.set_epoch(epoch)
            assert padding_ratio(sampler, lengths) <= 0.03, (batch_size, max_tokens, pool_size, epoch)


@pytest.mark.parametrize("value", [0, -5, 2.5, "100", True])
def test_invalid_max_tokens_is_a_user_error(value: object) -> None:
    from rnnlab.data import KeywordsDataModule

    with pytest.raises(UserError, match="data.max_tokens"):
        BucketBatchSampler(LENGTHS, batch_size=8, max_tokens=value)  # type: ignore[arg-type]
    with pytest.raises(UserError, match="data.max_tokens"):
        KeywordsDataModule(max_tokens=value)  # type: ignore[arg-type]


@pytest.mark.parametrize("bucketing", [True, False])
def test_datamodule_with_max_tokens_serves_batches_within_the_budget(bucketing: bool) -> None:
    from rnnlab.batch import Batch
    from rnnlab.data import KeywordsDataModule

    module = KeywordsDataModule(num_train=300, num_val=60, num_test=20, batch_size=256, max_tokens=120, bucketing=bucketing)
    module.setup("fit")
    for split, loader in (("train", module.train_dataloader()), ("val", module.val_dataloader())):
        assert isinstance(loader.batch_sampler, BucketBatchSampler) and loader.batch_sampler.max_tokens == 120
        seen, sizes = [], []
        for batch in loader:
            assert isinstance(batch, Batch)
            size, steps = batch.inputs.shape
            assert size * steps <= 120 or size == 1
            sizes.append(size)
            seen += batch.extras["index"].tolist()
        assert sorted(seen) == list(range(len(module.datasets[split]))), split
        assert len(sizes) == len(loader)
        if bucketing or split == "val":  # without bucketing, random training batches under the budget
            assert max(sizes) > 2 * min(sizes)  # short examples: bigger batches


@pytest.mark.usefixtures("one_torch_thread")
def test_training_with_max_tokens_validates_every_epoch_and_trains_each_epochs_batches() -> None:
    """The number of budget batches changes from epoch to epoch (pools of one batch make it change
    a lot); Lightning must not keep the first epoch's count (it would skip validation after a
    shorter epoch and cut a longer one short)."""
    import lightning as L

    from rnnlab.data import KeywordsDataModule
    from rnnlab.tasks import SequenceClassifier

    module = KeywordsDataModule(num_train=200, num_val=20, num_test=20, batch_size=64, max_tokens=250, bucket_pool_size=1, seed=5)
    module.setup("fit")
    backbone = {"_target_": "rnnlab.backbones.RecurrentBackbone", "cell": "gru", "hidden_size": 4, "embedding_dim": 4}
    model = SequenceClassifier(module.spec, backbone, {"_target_": "torch.optim.Adam", "lr": 0.01})

    class Record(L.Callback):
        def __init__(self) -> None:
            self.trained: dict[int, list[list[int]]] = {}
            self.validated: list[tuple[int, int]] = []

        def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int) -> None:
            self.trained.setdefault(trainer.current_epoch, []).append(batch.extras["index"].tolist())

        def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
            self.validated.append((trainer.current_epoch, len(self.trained[trainer.current_epoch])))

    record = Record()
    trainer = L.Trainer(
        max_epochs=4, accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, num_sanity_val_steps=0, callbacks=[record], use_distributed_sampler=False,
    )
    trainer.fit(model, datamodule=module)
    lengths = [len(example["inputs"]) for example in module.datasets["train"]]
    expected = {}
    for epoch in range(4):
        sampler = BucketBatchSampler(lengths, batch_size=64, max_tokens=250, pool_size=1, seed=5)
        sampler.set_epoch(epoch)
        expected[epoch] = list(sampler)
    assert len({len(batches) for batches in expected.values()}) > 1  # the count does change
    assert record.trained == expected
    assert record.validated == [(epoch, len(expected[epoch])) for epoch in range(4)]
