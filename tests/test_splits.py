"""stratified_split: label proportions, determinism, and duplicates kept in one part."""

from __future__ import annotations

from collections import Counter

from rnnlab.data.splits import stratified_split

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
