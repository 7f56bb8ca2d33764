"""ConfusionCounts and MacroF1: the same numbers as torchmetrics' MulticlassConfusionMatrix and
MulticlassF1Score(average="macro"), counted without an op that makes the host wait for a GPU."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torchmetrics import Metric
from torchmetrics.classification import MulticlassConfusionMatrix, MulticlassF1Score

from rnnlab.tasks.confusion import ConfusionCounts, MacroF1

aten = torch.ops.aten
C = 5


def random_batches(seed: int, high: int = C) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(predicted, target) pairs: 1-D, 2-D and a batch that only holds classes 0 and 1."""
    generator = torch.Generator().manual_seed(seed)
    shapes_and_highs = [((17,), high), ((4, 6), high), ((9,), 2), ((3, 1, 5), high)]
    return [
        (torch.randint(0, top, shape, generator=generator), torch.randint(0, top, shape, generator=generator))
        for shape, top in shapes_and_highs
    ]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_counts_match_torchmetrics(seed: int) -> None:
    ours, theirs = ConfusionCounts(C), MulticlassConfusionMatrix(C)
    for predicted, target in random_batches(seed):
        ours.update(predicted, target)
        theirs.update(predicted, target)
        assert ours.compute().dtype == torch.long
        assert torch.equal(ours.compute(), theirs.compute())


def test_ignore_index_at_padding_counts_nowhere() -> None:
    """The tagger passes (B, T) tags with IGNORE_INDEX at padding, unmasked: masking would wait."""
    predicted = torch.tensor([[0, 1, -100], [2, -100, -100]])
    target = torch.tensor([[0, 2, -100], [2, -100, -100]])
    counts = ConfusionCounts(3)
    counts.update(predicted, target)
    assert torch.equal(counts.compute(), torch.tensor([[1, 0, 0], [0, 0, 0], [0, 1, 1]]))


def test_counts_are_gold_by_predicted() -> None:
    metric = ConfusionCounts(3)
    metric.update(torch.tensor([0, 1, 1, 2]), torch.tensor([0, 0, 1, 1]))
    assert metric.compute().tolist() == [[1, 1, 0], [0, 1, 1], [0, 0, 0]]


# (predicted, target) batches, each case updated in turn; C classes.
F1_CASES = {
    "random": random_batches(3),
    "class in neither": random_batches(4, high=C - 1),
    "class only predicted": [(torch.tensor([0, 4, 1, 2, 4, 3]), torch.tensor([0, 1, 1, 2, 3, 3]))],
    "class only gold": [(torch.tensor([0, 1, 1, 2, 3, 3]), torch.tensor([0, 4, 1, 2, 4, 3]))],
    "perfect": [(torch.arange(C).repeat(3), torch.arange(C).repeat(3))],
    "perfect on some classes": [(torch.tensor([1, 3, 3]), torch.tensor([1, 3, 3]))],
}


@pytest.mark.parametrize("case", F1_CASES)
def test_macro_f1_matches_torchmetrics(case: str) -> None:
    ours, theirs = MacroF1(C), MulticlassF1Score(C, average="macro")
    for predicted, target in F1_CASES[case]:
        ours.update(predicted, target)
        theirs.update(predicted, target)
        assert ours.compute().shape == ()
        assert torch.equal(ours.compute(), theirs.compute()), (ours.compute(), theirs.compute())


def test_macro_f1_leaves_out_classes_never_seen() -> None:
    """Class 2 is neither gold nor predicted: the mean is over classes 0 and 1 (F1 2/3 each), not 3 classes."""
    metric = MacroF1(3)
    metric.update(torch.tensor([0, 1, 1]), torch.tensor([0, 0, 1]))
    torch.testing.assert_close(metric.compute(), torch.tensor(2 / 3))


def test_macro_f1_of_nothing_is_zero() -> None:
    """As torchmetrics' before any update (which cannot take an empty batch): 0, not NaN."""
    metric = MacroF1(C)
    metric.update(torch.empty(0, dtype=torch.long), torch.empty(0, dtype=torch.long))
    with pytest.warns(UserWarning, match="before the ``update``"):
        expected = MulticlassF1Score(C, average="macro").compute()
    assert torch.equal(metric.compute(), expected)


def test_reset() -> None:
    metric = MacroF1(C)
    metric.update(torch.tensor([0, 1]), torch.tensor([1, 1]))
    metric.reset()
    assert not metric.update_called
    assert torch.equal(metric.counts, torch.zeros(C, C, dtype=torch.long))
    metric.update(torch.tensor([2]), torch.tensor([2]))
    assert metric.compute().item() == 1.0


@pytest.mark.parametrize("kind", [ConfusionCounts, MacroF1])
def test_merged_states_count_the_union(kind: type[ConfusionCounts]) -> None:
    """Merging sums the counts, as DDP's sync does: the result is that of one metric over all updates."""
    first, second, union = kind(C), kind(C), kind(C)
    batches = random_batches(5)
    for i, (predicted, target) in enumerate(batches):
        (first if i % 2 else second).update(predicted, target)
        union.update(predicted, target)
    first.merge_state(second)
    assert torch.equal(first.counts, union.counts)
    assert torch.equal(first.compute(), union.compute())


# Ops that read device values on the host (on a GPU, a wait for the queued kernels) or size their
# output by the data.
HOST_WAITS = {aten.bincount, aten.nonzero, aten.masked_select, aten._local_scalar_dense, aten._unique2, aten.is_nonzero}


class RecordOps(TorchDispatchMode):
    """Records every aten op run inside it, with whether it indexed with a boolean mask."""

    def __init__(self) -> None:
        super().__init__()
        self.ops: list[Any] = []
        self.bool_indexing = False

    def __torch_dispatch__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        self.ops.append(func.overloadpacket)
        if func.overloadpacket in (aten.index, aten.index_put, aten.index_put_):
            self.bool_indexing |= any(i is not None and i.dtype == torch.bool for i in args[1])
        return func(*args, **(kwargs or {}))


def update_on_meta(metric: Metric) -> RecordOps:
    """Runs one update on meta tensors (they have no values to read) and records its ops."""
    metric = metric.to("meta")
    predicted = torch.empty(4, 7, dtype=torch.long, device="meta")
    target = torch.empty(4, 7, dtype=torch.long, device="meta")
    with RecordOps() as recorder:
        metric.update(predicted, target)
    return recorder


@pytest.mark.parametrize("kind", [ConfusionCounts, MacroF1])
def test_update_never_makes_the_host_wait(kind: type[ConfusionCounts]) -> None:
    recorder = update_on_meta(kind(C))
    assert recorder.ops
    assert not HOST_WAITS & set(recorder.ops), recorder.ops
    assert not recorder.bool_indexing


def test_macro_f1_compute_never_makes_the_host_wait() -> None:
    metric = MacroF1(C).to("meta")
    metric.update(torch.empty(3, dtype=torch.long, device="meta"), torch.empty(3, dtype=torch.long, device="meta"))
    with RecordOps() as recorder:
        assert metric.compute().shape == ()
    assert not HOST_WAITS & set(recorder.ops), recorder.ops
    assert not recorder.bool_indexing


@pytest.mark.parametrize(("kind", "options"), [(MulticlassConfusionMatrix, {}), (MulticlassF1Score, {"average": "macro"})])
def test_torchmetrics_counting_fails_the_same_check(kind: type[Metric], options: dict[str, str]) -> None:
    """The check can fail: torchmetrics' counting runs torch.bincount, which has no meta kernel.
    (Not in deterministic mode, which an in-process Trainer(deterministic=True) leaves switched on.)"""
    deterministic, warn_only = torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled()
    torch.use_deterministic_algorithms(False)
    try:
        with pytest.raises(NotImplementedError, match="bincount"):
            update_on_meta(kind(C, validate_args=False, **options))
    finally:
        torch.use_deterministic_algorithms(deterministic, warn_only=warn_only)
