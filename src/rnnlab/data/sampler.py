"""Length-bucketed batching: batches of similar lengths, so little compute goes into padding."""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import Sampler

from rnnlab.errors import UserError, is_positive_int


class BucketBatchSampler(Sampler[list[int]]):
    """Yields batches (lists of dataset indices) of similar-length examples.

    shuffle=True (training): a generator seeded with ``seed + epoch`` permutes all indices; the
    permutation is cut into pools of ``pool_size * batch_size`` indices, each pool is sorted by
    length (stable) and cut into batches, and then the order of all batches is shuffled. Same
    seed and epoch -> same batches; call ``set_epoch`` for a new order each epoch. Bigger pools
    give tighter buckets: on Brown's sentence lengths, batches of 32 pad 7.4 % with pools of 50
    batches, 2.4 % with 200 (the default) and 0.3 % with one pool of everything; each batch
    stays a random draw among examples of about the same length.

    shuffle=False (evaluation): all indices sorted by length (stable), cut into batches; no randomness.

    Batch sizes: without ``max_tokens``, every batch holds ``batch_size`` examples but the last.
    With ``max_tokens`` (a token budget), each length-sorted pool is cut into batches that fit
    ``len(batch) * longest length in it <= max_tokens`` (the padded steps the model computes), at
    most ``batch_size`` (a cap, so it may be set large), so short sequences come in bigger batches
    than long ones; of such cuts, the one computing the least padding plus a fixed cost per batch
    (:func:`cut_by_tokens`). A single example longer than
    ``max_tokens`` forms a batch alone (never dropped). The budget counts the ``lengths`` given,
    the data modules' input steps. The number of batches then depends on the epoch's
    permutation; ``len`` is computed from the same batch list (cached per seed and epoch).
    ``sort_pools=False`` (``data.bucketing=false`` with a budget) leaves the pools unsorted: the
    random permutation is cut in its own order by the same rule, giving random batches.

    drop_last drops the one batch shorter than ``batch_size``, if any: every pool but the last
    holds a whole number of batches, so only the final batch can be short. With ``max_tokens``
    batch sizes vary by design, so no batch counts as short and drop_last drops nothing, except
    in distributed training: there it drops the one batch of fewer than R examples (below).

    Distributed: ``batch_size`` is the global batch. With R replicas (``num_replicas``/``rank``,
    or else the initialised ``torch.distributed`` group, resolved at iteration time so that the
    sampler never depends on when Lightning sets up the group), every rank forms the same global
    batches as a single process with the same seed would (so all ranks need the same ``seed``),
    and rank r takes ``batch[r::R]`` of each: batches are length-sorted, so every share spans the
    batch's lengths (even work per rank). With a per-example mean loss and equal shares, DDP's
    average of the ranks' gradients is then the gradient of the global batch, as in one process.

    - shuffle=True (training): ``batch_size`` must be divisible by R (else UserError), so every
      full batch splits into equal shares. The one short batch (without drop_last) splits as
      evenly as possible (its shares may differ by one example, weighting them slightly unequally
      in the gradient); if it has fewer than R examples it is topped up to R by repeating its own
      examples, since DDP needs every rank to take every step. ``len`` is the number of global
      batches on every rank.
      With ``max_tokens``, every budget batch's size is rounded down to a multiple of R, and is at
      least R (R examples may then pass the budget, as one over-long example does alone), so
      every share of every batch has the same size; the global batches therefore depend on R (they
      are those of one process only for R = 1). Full pools hold a multiple of R examples, so only
      the end of the last pool can leave a batch of fewer than R examples (when R does not divide
      the split): it is topped up as above, or dropped with drop_last.
    - shuffle=False (evaluation): no example is repeated, so that metrics summed over ranks
      count each example once; any eval batch size works (shares may differ by one example) and
      a rank whose share of the short last batch is empty skips it, so ``len`` may be one less on
      the higher ranks. A split with fewer examples than R is a UserError (a rank with no batch
      at all would leave the others waiting for its metrics). With ``max_tokens``, every batch
      but the last takes at least R examples (passing the budget if it must), so that, as
      without a budget, only the last batch can leave a rank out.

    With Lightning, build the DataLoader with ``batch_sampler=`` and set
    ``Trainer(use_distributed_sampler=False)``: this class does its own sharding and Lightning
    cannot inject a DistributedSampler into it. It deliberately has no public ``batch_size`` or
    ``drop_last`` attribute, because Lightning would then try to re-create it as if it were a
    ``torch.utils.data.BatchSampler``.
    """

    def __init__(
        self,
        lengths: Sequence[int],
        batch_size: int,
        shuffle: bool = True,
        pool_size: int = 200,
        drop_last: bool = False,
        seed: int = 0,
        num_replicas: int | None = None,
        rank: int | None = None,
        max_tokens: int | None = None,
        sort_pools: bool = True,
    ) -> None:
        if not is_positive_int(batch_size):
            raise UserError(f"data.batch_size must be a positive integer; got {batch_size!r}")
        if not is_positive_int(pool_size):
            raise UserError(f"data.bucket_pool_size must be a positive integer; got {pool_size!r}")
        check_max_tokens(max_tokens)
        if num_replicas is not None and not is_positive_int(num_replicas):
            raise ValueError(f"num_replicas must be a positive integer; got {num_replicas!r}")
        if rank is not None and num_replicas is not None and not 0 <= rank < num_replicas:
            raise ValueError(f"rank must be in [0, {num_replicas}); got {rank!r}")
        self._lengths = torch.as_tensor(list(lengths), dtype=torch.long)  # (N,)
        self._length_list: list[int] = self._lengths.tolist()
        self._batch_size = batch_size
        self._drop_last = drop_last
        self.shuffle = shuffle
        self.pool_size = pool_size
        self.seed = seed
        self.num_replicas = num_replicas
        self.rank = rank
        self.max_tokens = max_tokens
        self.sort_pools = sort_pools
        self.epoch = 0
        # Batches of this rank to leave out at the start of the next iteration only: a run resumed
        # mid-epoch continues with the batch it stopped before (rnnlab.callbacks.resume).
        self.skip_batches = 0
        # With max_tokens: (key, the epoch's global batches) and (key + rank, len), see _batches.
        self._cached_batches: tuple[tuple[Any, ...], list[list[int]]] | None = None
        self._cached_len: tuple[tuple[Any, ...], int] | None = None

    @property
    def sampler(self) -> BucketBatchSampler:
        """Itself: Lightning calls ``set_epoch`` on ``dataloader.batch_sampler.sampler``, not on the batch sampler."""
        return self

    def set_epoch(self, epoch: int) -> None:
        """Select the shuffle of this epoch (the generator is seeded with ``seed + epoch``)."""
        self.epoch = int(epoch)

    def __iter__(self) -> Iterator[list[int]]:
        replicas, rank = self._world()
        skip, self.skip_batches = self.skip_batches, 0
        shares = (rank_share(batch, replicas, rank, pad=self.shuffle) for batch in self._batches(replicas))
        yield from itertools.islice((list(share) for share in shares if share), skip, None)

    def __len__(self) -> int:
        replicas, rank = self._world()
        if self.max_tokens is not None:
            key = (*self._budget_key(replicas), rank)
            if self._cached_len is None or self._cached_len[0] != key:
                batches = self._batches(replicas)
                count = len(batches) if self.shuffle else sum(len(batch) > rank for batch in batches)
                self._cached_len = (key, count)
            return self._cached_len[1]
        n, size = len(self._lengths), self._batch_size
        total = n // size if self._drop_last else -(-n // size)
        short = 0 if self._drop_last else n % size  # size of the one short batch; 0: none
        if not self.shuffle and 0 < short <= rank:
            return total - 1  # this rank's share of the short batch is empty (evaluation: no repeats)
        return total

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_cached_batches"] = state["_cached_len"] = None  # recomputed on demand
        return state

    def _batches(self, replicas: int = 1) -> list[list[int]]:
        """All batches of this epoch, before sharding among ``replicas`` ranks. Under a token budget
        they are cached, since ``len`` (which depends on them) and ``iter`` both need them."""
        if self.max_tokens is None:
            return self._form_batches(replicas)
        key = self._budget_key(replicas)
        if self._cached_batches is None or self._cached_batches[0] != key:
            self._cached_batches = (key, self._form_batches(replicas))
        return self._cached_batches[1]

    def _budget_key(self, replicas: int) -> tuple[Any, ...]:
        """Everything the batches of a token budget depend on."""
        return (self.seed, self.epoch, self.shuffle, self.pool_size, self.sort_pools, self.max_tokens, replicas)

    def _form_batches(self, replicas: int) -> list[list[int]]:
        if not self.shuffle:
            order = torch.sort(self._lengths, stable=True).indices.tolist()
            return self._drop_short(self._cut(order, step=1, least=replicas), replicas)
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        perm = torch.randperm(len(self._lengths), generator=generator)
        pool_len = self.pool_size * self._batch_size if self.sort_pools else max(len(perm), 1)
        batches: list[list[int]] = []
        for start in range(0, len(perm), pool_len):
            pool = perm[start : start + pool_len]
            if self.sort_pools:
                pool = pool[torch.sort(self._lengths[pool], stable=True).indices]
            batches.extend(self._cut(pool.tolist(), step=replicas, least=replicas))
        batches = self._drop_short(batches, replicas)
        return [batches[i] for i in torch.randperm(len(batches), generator=generator).tolist()]

    def _cut(self, indices: list[int], step: int, least: int) -> list[list[int]]:
        """``indices`` in order into batches of ``batch_size``, or under the token budget
        (:func:`cut_by_tokens`, shares of ``step`` examples, at least ``least``)."""
        if self.max_tokens is None:
            return _cut(indices, self._batch_size)
        return cut_by_tokens(indices, self._length_list, self.max_tokens, self._batch_size, step=step, least=least)

    def _drop_short(self, batches: list[list[int]], replicas: int) -> list[list[int]]:
        """Without the final short batch when drop_last (only the last batch can be short): shorter
        than ``batch_size``; under a token budget, a training batch of fewer than R examples (the end
        of the last pool, under R > 1)."""
        if self.max_tokens is None:
            short = self._batch_size
        else:
            short = replicas if self.shuffle else 0
        if self._drop_last and batches and len(batches[-1]) < short:
            return batches[:-1]
        return batches

    def _world(self) -> tuple[int, int]:
        """(R, rank), after checking that this sampler's batches can be shared among R ranks."""
        replicas, rank = world_size_and_rank(self.num_replicas, self.rank)
        if replicas > 1 and self.shuffle and self._batch_size % replicas:
            raise UserError(
                f"data.batch_size={self._batch_size} is the global batch, split evenly across processes: "
                f"it must be divisible by the number of processes ({replicas})"
            )
        if replicas > 1 and not self.shuffle and self._batch_size < replicas:
            raise UserError(
                f"data.eval_batch_size={self._batch_size} is the global evaluation batch, shared among processes: "
                f"it must be at least the number of processes ({replicas})"
            )
        if replicas > 1 and not self.shuffle and len(self._lengths) < replicas:
            raise UserError(
                f"an evaluation split of {len(self._lengths)} examples cannot be shared among {replicas} processes: "
                "each needs at least one"
            )
        return replicas, rank


def world_size_and_rank(num_replicas: int | None = None, rank: int | None = None) -> tuple[int, int]:
    """(num_replicas, rank): explicit values first, then the torch.distributed group, else (1, 0)."""
    dist = torch.distributed
    if (num_replicas is None or rank is None) and dist.is_available() and dist.is_initialized():
        num_replicas = dist.get_world_size() if num_replicas is None else num_replicas
        rank = dist.get_rank() if rank is None else rank
    num_replicas = 1 if num_replicas is None else num_replicas
    rank = 0 if rank is None else rank
    if not 0 <= rank < num_replicas:
        raise ValueError(f"rank must be in [0, {num_replicas}); got {rank}")
    return num_replicas, rank


def check_max_tokens(max_tokens: object) -> None:
    """``data.max_tokens`` is null (no token budget) or a positive integer; else UserError."""
    if max_tokens is not None and not is_positive_int(max_tokens):
        raise UserError(f"data.max_tokens must be null or a positive integer (padded tokens per batch); got {max_tokens!r}")


def _cut(indices: list[int], size: int) -> list[list[int]]:
    return [indices[i : i + size] for i in range(0, len(indices), size)]


#: What one more batch costs, in padded tokens: :func:`cut_by_tokens` splits a batch only where
#: that saves more padding. A step's fixed work (the optimizer, the framework, kernel launches) is
#: worth about 100-250 tokens of compute for the CPU models benchmarked (about 2 ms of host work per
#: step against 10-20 us per token), hence at least 256, and 1/64 of a large budget. On whole BBC
#: News articles (budget 41,381: a batch cost of 647) 35 batches pad 2.6 % where cutting each batch
#: as long as it fits left 19 padding 7.9 %, at 1.025 x the real tokens per second (one CPU, A/B,
#: 3 repeats); on Brown POS (budget 1,823) 521 batches pad 0.18 % against 519 padding 0.32 %
#: (0.99 x, 5 repeats). A smaller cost there (28) cut 537 batches at 0.98 x.
BATCH_COST_SHARE = 1 / 64
BATCH_COST_LEAST = 256


def cut_by_tokens(
    indices: list[int], lengths: Sequence[int], max_tokens: int, cap: int, step: int = 1, least: int = 1
) -> list[list[int]]:
    """Cut ``indices`` in order into batches under a token budget: of the cuts whose every batch has
    ``len(batch) * max(lengths of batch) <= max_tokens``, at most ``cap`` examples and ``least`` plus
    a multiple of ``step``, the one that computes the fewest padded steps plus ``max(BATCH_COST_SHARE
    * max_tokens, BATCH_COST_LEAST)`` per batch (dynamic programming over the cut points; cutting
    greedily, each batch as long as fits, leaves a long-tailed length distribution's batches padded
    at their ends). A batch of ``least`` examples may pass the budget (a single over-long example is
    a batch alone), and the last batch may hold fewer (what is left). On length-sorted ``indices``
    the batches are tight length buckets."""
    n = len(indices)
    size_list = [lengths[i] for i in indices]
    sizes = np.asarray(size_list, dtype=np.int64)
    count = np.arange(1, max(cap, least) + 1)  # a batch's possible sizes k
    shaped = (count >= least) & ((count - least) % step == 0)
    # Length-sorted and any size allowed (one process, the usual case): the last k examples pad to
    # the last one's length, and every k up to the span fits: no mask (Brown POS: 0.13 s a cut, from 0.36).
    sorted_free = least == 1 and step == 1 and bool(np.all(sizes[1:] >= sizes[:-1]))
    batch_cost = max(BATCH_COST_SHARE * max_tokens, BATCH_COST_LEAST)
    best = np.full(n + 1, np.inf)  # best[e]: the least cost of cutting indices[:e]
    best[0] = 0.0
    first = np.zeros(n + 1, dtype=np.int64)  # first[e]: where the last batch of that cut starts
    for end in range(1, n + 1):
        # Past max_tokens // (the last length) examples no batch ending here fits, but one of least.
        span = min(end, len(count), max(least, max_tokens // max(size_list[end - 1], 1)))
        k = count[:span]
        if sorted_free:
            cost = best[end - span : end][::-1] + k * size_list[end - 1]
        else:
            tokens = k * np.maximum.accumulate(sizes[end - span : end][::-1])  # the last k, padded
            allowed = shaped[:span] & ((tokens <= max_tokens) | (k == least))
            if end == n:
                allowed |= k < least
            cost = np.where(allowed, best[end - span : end][::-1] + tokens, np.inf)
        choice = int(cost.argmin())
        best[end], first[end] = cost[choice] + batch_cost, end - (choice + 1)  # k[choice] = choice + 1
    batches: list[list[int]] = []
    end = n
    while end > 0:
        batches.append(indices[first[end] : end])
        end = int(first[end])
    return batches[::-1]


def rank_share(batch: list[int], replicas: int, rank: int, pad: bool = True) -> list[int]:
    """Rank ``rank``'s slice ``batch[rank::replicas]`` of a global batch. ``pad``: a batch with
    fewer than ``replicas`` examples first repeats its own examples up to ``replicas`` so that no
    share is empty (training); else such a share is empty (evaluation)."""
    if replicas == 1:
        return batch
    if pad and 0 < len(batch) < replicas:
        batch = [batch[i % len(batch)] for i in range(replicas)]
    return batch[rank::replicas]


def padding_ratio(batches: Iterable[Sequence[int]], lengths: Sequence[int]) -> float:
    """Padded steps / computed steps when each batch is padded to its own longest member."""
    computed = valid = 0
    for batch in batches:
        batch_lengths = [lengths[i] for i in batch]
        if batch_lengths:
            computed += len(batch_lengths) * max(batch_lengths)
            valid += sum(batch_lengths)
    return (computed - valid) / computed if computed else 0.0
