"""Splits: seeded, label-stratified ones that keep duplicate examples together; contiguous ones;
and the train / val / test parts of user files."""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Callable, Hashable, Sequence
from typing import Generic, TypeVar

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


#: (rows of the training file, {"val": fraction, "test": fraction} of the parts to carve) -> parts by name
Carve = Callable[[list[T], dict[str, float]], dict[str, list[T]]]


class UserFileSplits(Generic[T]):
    """The train / val / test parts of a user's files: each split's own file when given, else val
    and test carved out of the training file by ``carve`` with ``val_fraction`` / ``test_fraction``.

    ``read`` reads one file; ``unit`` names its rows in messages ("rows", "sentences", "lines").
    The training file is read and carved once.
    """

    def __init__(
        self,
        train_file: str,
        val_file: str | None,
        test_file: str | None,
        val_fraction: float,
        test_fraction: float,
        read: Callable[[str], list[T]],
        carve: Carve[T],
        unit: str = "rows",
    ) -> None:
        check_fraction("val_fraction", val_fraction)
        check_fraction("test_fraction", test_fraction)
        self.files = {"train": train_file, "val": val_file, "test": test_file}
        self.fractions = {"val": val_fraction, "test": test_fraction}
        self.read = read
        self.carve = carve
        self.unit = unit
        self._carved: dict[str, list[T]] | None = None

    def __getitem__(self, split: str) -> list[T]:
        if split != "train" and self.files[split] is not None:
            return self.read(self.files[split])
        if self._carved is None:
            missing = {name: fraction for name, fraction in self.fractions.items() if self.files[name] is None}
            self._carved = self.carve(self.read(self.files["train"]), missing)
        return self._carved[split]

    def describe(self, split: str) -> str:
        """Where ``split`` comes from, for the message about an empty split."""
        if self.files[split] is not None:
            return f"file {self.files[split]}"
        return (
            f"data.{split}_fraction={self.fractions[split]} of {self.files['train']} selects no {self.unit}; "
            f"give data.{split}_file or a larger fraction"
        )


def contiguous_split(rows: Sequence[T], fractions: dict[str, float]) -> dict[str, list[T]]:
    """``train | val | test`` as consecutive blocks, each part ``round(fraction * len(rows))`` rows
    (running text stays together; the held-out parts come from the end)."""
    sizes = {name: round(fractions.get(name, 0.0) * len(rows)) for name in ("val", "test")}
    end_train = len(rows) - sizes["val"] - sizes["test"]
    end_val = end_train + sizes["val"]
    return {"train": list(rows[:end_train]), "val": list(rows[end_train:end_val]), "test": list(rows[end_val:])}
