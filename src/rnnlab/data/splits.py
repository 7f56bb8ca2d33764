"""Seeded, label-stratified splits of a list of examples."""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Callable, Sequence
from typing import TypeVar

T = TypeVar("T")


def stratified_split(
    examples: Sequence[T], fractions: dict[str, float], seed: int, label_of: Callable[[T], object]
) -> dict[str, list[T]]:
    """Split ``examples`` into ``train`` plus one part per entry of ``fractions`` (e.g. val, test).

    Each label's examples are shuffled with ``seed`` and cut by the fractions, so every part keeps
    the label proportions; ``train`` gets the rest. Each part keeps the input order.
    """
    groups: dict[object, list[int]] = defaultdict(list)
    for position, example in enumerate(examples):
        groups[label_of(example)].append(position)
    rng = random.Random(seed)
    assigned: dict[str, list[int]] = {name: [] for name in ("train", *fractions)}
    for label in sorted(groups, key=str):
        positions = groups[label]
        rng.shuffle(positions)
        start = 0
        for name, fraction in fractions.items():
            count = round(fraction * len(positions))
            assigned[name] += positions[start : start + count]
            start += count
        assigned["train"] += positions[start:]
    return {name: [examples[p] for p in sorted(positions)] for name, positions in assigned.items()}
