"""Seeded, label-stratified splits that keep duplicate examples together."""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Callable, Hashable, Sequence
from typing import TypeVar

from rnnlab.errors import UserError

T = TypeVar("T")


def check_fraction(name: str, value: float) -> None:
    """A split fraction (config key ``data.<name>``) must be in [0, 1)."""
    if not 0.0 <= value < 1.0:
        raise UserError(f"data.{name} must be in [0, 1); got {value}")


def stratified_split(
    examples: Sequence[T],
    fractions: dict[str, float],
    seed: int,
    label_of: Callable[[T], Hashable],
    group_of: Callable[[T], Hashable] = id,
) -> dict[str, list[T]]:
    """Split ``examples`` into ``train`` plus one part per entry of ``fractions`` (e.g. val, test).

    Examples with the same ``group_of`` key (e.g. identical texts) always land in the same part,
    so no duplicate leaks from train into test. Within each label, groups are shuffled with
    ``seed`` and dealt to the parts until each holds ``round(fraction * label count)`` examples;
    ``train`` gets the rest. Each part keeps the input order.
    """
    groups: dict[Hashable, dict[Hashable, list[int]]] = defaultdict(dict)
    for position, example in enumerate(examples):
        groups[label_of(example)].setdefault(group_of(example), []).append(position)
    rng = random.Random(seed)
    assigned: dict[str, list[int]] = {name: [] for name in ("train", *fractions)}
    for label in sorted(groups, key=str):
        units = list(groups[label].values())
        rng.shuffle(units)
        size = sum(len(unit) for unit in units)
        quotas = {name: round(fraction * size) for name, fraction in fractions.items()}
        for unit in units:
            part = next((name for name, quota in quotas.items() if quota > 0), "train")
            assigned[part] += unit
            if part != "train":
                quotas[part] -= len(unit)
    return {name: [examples[p] for p in sorted(positions)] for name, positions in assigned.items()}
