from __future__ import annotations

import pickle

import pytest
import torch
from torch.utils.data._utils.pin_memory import pin_memory

from rnnlab.data.collate import IGNORE_INDEX, SequenceCollator


def _ids(*values: int) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.long)


def test_token_ids_padded_with_pad_id_and_class_targets() -> None:
    examples = [
        {"inputs": _ids(5, 6), "target": 1, "index": 7},
        {"inputs": _ids(7, 8, 9, 10), "target": 0, "index": 2},
        {"inputs": _ids(11), "target": 2, "index": 4},
    ]
    batch = SequenceCollator(pad_id=3)(examples)
    assert batch.inputs.tolist() == [[5, 6, 3, 3], [7, 8, 9, 10], [11, 3, 3, 3]]
    assert batch.inputs.dtype == torch.long
    assert batch.lengths.tolist() == [2, 4, 1]
    assert batch.lengths.dtype == torch.long
    assert batch.mask.dtype == torch.bool
    assert batch.mask.sum(1).tolist() == batch.lengths.tolist()
    assert batch.mask.tolist()[0] == [True, True, False, False]
    assert batch.targets is not None and batch.targets.tolist() == [1, 0, 2]
    assert batch.targets.dtype == torch.long
    assert batch.extras["index"].tolist() == [7, 2, 4]  # order kept, no sorting


def test_float_features_padded_with_zeros() -> None:
    a, b = torch.randn(3, 2) + 5.0, torch.randn(1, 2) + 5.0
    batch = SequenceCollator(pad_id=9)([{"inputs": a, "index": 0}, {"inputs": b, "index": 1}])
    assert batch.inputs.shape == (2, 3, 2)
    assert batch.inputs.dtype == torch.float32
    assert torch.equal(batch.inputs[0], a)
    assert torch.equal(batch.inputs[1, :1], b)
    assert torch.all(batch.inputs[1, 1:] == 0.0)
    assert batch.targets is None
    assert batch.mask.tolist() == [[True, True, True], [True, False, False]]


def test_tag_targets_padded_with_ignore_index() -> None:
    examples = [
        {"inputs": _ids(1, 2, 3), "target": _ids(0, 1, 2), "index": 0},
        {"inputs": _ids(4), "target": _ids(3), "index": 1},
    ]
    batch = SequenceCollator()(examples)
    assert IGNORE_INDEX == -100
    assert batch.targets is not None
    assert batch.targets.tolist() == [[0, 1, 2], [3, -100, -100]]
    loss = torch.nn.functional.cross_entropy(torch.zeros(2, 3, 4).transpose(1, 2), batch.targets, reduction="sum")
    assert loss.item() == pytest.approx(4 * torch.log(torch.tensor(4.0)).item())  # 4 valid steps only


def test_character_ids_padded_per_token_and_per_sentence() -> None:
    examples = [
        {"inputs": _ids(1, 2), "chars": torch.tensor([[4, 5, 0], [6, 7, 8]]), "char_lengths": _ids(2, 3), "index": 0},
        {"inputs": _ids(3, 4, 5), "chars": torch.tensor([[9], [9], [4]]), "char_lengths": _ids(1, 1, 1), "index": 1},
    ]
    batch = SequenceCollator()(examples)
    assert batch.extras["chars"].shape == (2, 3, 3)
    assert batch.extras["chars"].tolist() == [[[4, 5, 0], [6, 7, 8], [0, 0, 0]], [[9, 0, 0], [9, 0, 0], [4, 0, 0]]]
    assert batch.extras["char_lengths"].tolist() == [[2, 3, 0], [1, 1, 1]]


def test_zero_length_example_is_a_bug() -> None:
    with pytest.raises(ValueError, match="no steps"):
        SequenceCollator()([{"inputs": _ids(1), "index": 0}, {"inputs": _ids(), "index": 1}])


def test_mixed_target_presence_is_a_bug() -> None:
    with pytest.raises(ValueError, match="target"):
        SequenceCollator()([{"inputs": _ids(1), "target": 0, "index": 0}, {"inputs": _ids(2), "index": 1}])


def test_collator_pickles() -> None:
    clone = pickle.loads(pickle.dumps(SequenceCollator(pad_id=4)))
    assert clone([{"inputs": _ids(1), "index": 0}, {"inputs": _ids(1, 2), "index": 1}]).inputs.tolist() == [
        [1, 4],
        [1, 2],
    ]


def test_works_as_dataloader_collate_fn() -> None:
    data = [{"inputs": torch.arange(1, n + 1), "target": n % 2, "index": i} for i, n in enumerate([3, 1, 2, 5])]
    loader = torch.utils.data.DataLoader(data, batch_size=2, collate_fn=SequenceCollator())
    batches = list(loader)
    assert [b.inputs.shape for b in batches] == [(2, 3), (2, 5)]
    assert torch.cat([b.extras["index"] for b in batches]).tolist() == [0, 1, 2, 3]


def test_a_pinning_loader_pins_every_tensor_of_the_batch(monkeypatch: pytest.MonkeyPatch) -> None:
    """data.pin_memory=true: the DataLoader pins what its collate returns through the batch's own
    pin_memory (a dataclass without one would pass unpinned). Pinning needs a GPU, so here it is
    recorded instead of done; tests/test_cuda.py pins for real."""
    examples = [
        {"inputs": _ids(1, 2), "target": _ids(0, 1), "chars": torch.tensor([[4, 5], [6, 7]]), "char_lengths": _ids(2, 2), "index": 0},
        {"inputs": _ids(3), "target": _ids(1), "chars": torch.tensor([[9, 0]]), "char_lengths": _ids(1), "index": 1},
    ]
    batch = SequenceCollator()(examples)
    pinned: list[torch.Tensor] = []

    def record(tensor: torch.Tensor, *args: object, **kwargs: object) -> torch.Tensor:
        copy = tensor.clone()
        pinned.append(copy)
        return copy

    monkeypatch.setattr(torch.Tensor, "pin_memory", record)
    result = pin_memory(batch)  # what the DataLoader's pinning thread calls on each batch
    tensors = [result.inputs, result.lengths, result.mask, result.targets, *result.extras.values()]
    assert len(pinned) == len(tensors) == 7
    assert all(any(t is p for p in pinned) for t in tensors)
    for name in ("inputs", "lengths", "mask", "targets"):
        assert torch.equal(getattr(result, name), getattr(batch, name))
    assert result.extras.keys() == batch.extras.keys()
