"""stratified_split: label proportions, determinism, and duplicates kept in one part."""

from __future__ import annotations

from collections import Counter

import pytest

from rnnlab.data.splits import UserFileSplits, contiguous_split, stratified_split
from rnnlab.errors import UserError

FRACTIONS = {"val": 0.1, "test": 0.2}


def items(n_per_label: dict[str, int]) -> list[tuple[str, str]]:
    return [(f"{label}-{i}", label) for label, n in n_per_label.items() for i in range(n)]


def test_parts_cover_everything_once_with_label_proportions() -> None:
    examples = items({"a": 100, "b": 50})
    parts = stratified_split(examples, FRACTIONS, seed=0, label_of=lambda e: e[1])
    assert sorted(sum(parts.values(), [])) == sorted(examples)
    assert Counter(e[1] for e in parts["test"]) == {"a": 20, "b": 10}
    assert Counter(e[1] for e in parts["val"]) == {"a": 10, "b": 5}


def test_same_seed_same_split_other_seed_other_split() -> None:
    examples = items({"a": 40, "b": 40})
    first = stratified_split(examples, FRACTIONS, seed=3, label_of=lambda e: e[1])
    assert first == stratified_split(examples, FRACTIONS, seed=3, label_of=lambda e: e[1])
    assert first != stratified_split(examples, FRACTIONS, seed=4, label_of=lambda e: e[1])


def test_each_part_keeps_input_order() -> None:
    examples = items({"a": 30, "b": 30})
    for part in stratified_split(examples, FRACTIONS, seed=0, label_of=lambda e: e[1]).values():
        assert part == sorted(part, key=examples.index)


def test_duplicates_stay_in_one_part() -> None:
    # 20 texts, each present three times: a split by example would scatter copies over the parts.
    examples = [(f"text-{i % 20}", "a") for i in range(60)]
    for seed in range(5):
        parts = stratified_split(examples, FRACTIONS, seed=seed, label_of=lambda e: e[1], group_of=lambda e: e[0])
        texts = {name: {e[0] for e in part} for name, part in parts.items()}
        assert not texts["train"] & texts["val"] and not texts["train"] & texts["test"] and not texts["val"] & texts["test"]
        assert len(parts["test"]) == 12 and len(parts["val"]) == 6


def test_contiguous_split_keeps_running_text_together() -> None:
    rows = list(range(20))
    parts = contiguous_split(rows, {"val": 0.1, "test": 0.2})
    assert parts == {"train": list(range(14)), "val": [14, 15], "test": list(range(16, 20))}
    assert contiguous_split(rows, {"val": 0.25}) == {"train": list(range(15)), "val": list(range(15, 20)), "test": []}


def test_user_file_splits_read_given_files_and_carve_the_rest_once() -> None:
    reads: list[str] = []

    def read(path: str) -> list[str]:
        reads.append(path)
        return [f"{path}#{i}" for i in range(10)]

    splits = UserFileSplits("train.txt", None, "test.txt", 0.2, 0.5, read=read, carve=contiguous_split, unit="lines")
    assert splits["test"] == read("test.txt")[:10]
    assert splits["val"] == ["train.txt#8", "train.txt#9"]  # test has its file: only val is carved
    assert splits["train"] == [f"train.txt#{i}" for i in range(8)]
    assert reads.count("train.txt") == 1
    assert splits.describe("test") == "file test.txt"
    assert "data.val_fraction=0.2 of train.txt selects no lines" in splits.describe("val")
    with pytest.raises(UserError, match=r"data.test_fraction must be in \[0, 1\); got 1.5"):
        UserFileSplits("a", None, None, 0.1, 1.5, read=read, carve=contiguous_split)
