"""The one batch type that every task, data module and head shares."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

#: The target id at padded steps (cross-entropy's default ignore_index): padding contributes no
#: loss, and decoded tag paths carry it at padding too.
IGNORE_INDEX = -100


@dataclass
class Batch:
    """A padded batch of variable-length sequences.

    inputs   (B, T) token ids (long), or (B, T, F) real-valued features (float)
    lengths  (B,)   valid steps per example, every one >= 1
    mask     (B, T) True at valid steps
    targets  (B,) class ids | (B, T) tags | (B, T') target tokens | (B, H, F') horizon values;
             None when predicting
    extras   task-specific tensors, e.g. ``index`` (B,): position of each example in its dataset
    host     the batch as its data loader made it, on the CPU, kept when the batch moves to a GPU
             (:meth:`to`); read it through :attr:`on_host`
    """

    inputs: torch.Tensor
    lengths: torch.Tensor
    mask: torch.Tensor
    targets: torch.Tensor | None = None
    extras: dict[str, Any] = field(default_factory=dict)
    # Not an __init__ field: map() and dataclass copies leave it out (None).
    host: Batch | None = field(default=None, init=False, repr=False, compare=False)

    @property
    def on_host(self) -> Batch:
        """The batch on the CPU: lengths, masks and extras read from it cost a GPU no wait for its
        queued kernels, where reading the moved batch's would. The batch itself if it never moved."""
        return self if self.host is None else self.host

    def __len__(self) -> int:
        return self.inputs.shape[0]

    def map(self, apply: Callable[[Any], Any]) -> Batch:
        """A new batch of ``apply`` on each field and on each extra (``targets`` None included)."""
        return Batch(
            apply(self.inputs),
            apply(self.lengths),
            apply(self.mask),
            apply(self.targets),
            {key: apply(value) for key, value in self.extras.items()},
        )

    def to(self, device: torch.device | str) -> Batch:
        """The batch on ``device``: what Lightning's batch transfer calls (as on a tensor). Copied
        without blocking the host, as Lightning copies tensors; off the CPU the batch keeps the one
        it came from as :attr:`host`, since the host must read lengths and masks, and reading the
        moved ones would wait for every kernel a GPU has queued (the last step's included)."""
        device = torch.device(device)
        non_blocking = device.type not in ("cpu", "mps")  # Lightning's rule (MPS: a race in torch)
        moved = self.map(lambda value: value.to(device, non_blocking=non_blocking) if isinstance(value, torch.Tensor) else value)
        if device.type != "cpu":
            moved.host = self.on_host
        return moved

    def pin_memory(self) -> Batch:
        """The batch with every tensor in page-locked memory, so that copies to a GPU run
        asynchronously: what ``DataLoader(pin_memory=True)`` (``data.pin_memory=true``) calls.
        Without this method the loader would hand the batch on unpinned."""
        return self.map(lambda value: value.pin_memory() if isinstance(value, torch.Tensor) else value)

    def first(self, n: int) -> Batch:
        """The first ``n`` examples (all of them when ``n >= len(self)``); extras that hold one entry
        per example (tensors with B rows, lists of B items) are cut alike, others kept as they are.
        Padding beyond the kept examples' lengths stays: models must not depend on it."""
        size = len(self)

        def cut(value: Any) -> Any:
            if isinstance(value, torch.Tensor) and value.dim() > 0 and value.shape[0] == size:
                return value[:n]
            if isinstance(value, list) and len(value) == size:
                return value[:n]
            return value

        return self.map(cut)
