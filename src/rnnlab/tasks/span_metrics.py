"""Span-level precision, recall and F1 for sequence labeling, as the CoNLL evaluation script counts them."""

from __future__ import annotations

import torch
from torchmetrics import Metric

from rnnlab.tag_schemes import OUTSIDE, check_scheme, extract_spans, split_tag


def _ratio(numerator: torch.Tensor, denominator: torch.Tensor) -> torch.Tensor:
    """numerator / denominator as float, 0 where the denominator is 0 (no NaN)."""
    numerator, denominator = numerator.float(), denominator.float()
    return torch.where(denominator > 0, numerator / denominator.clamp(min=1), 0.0)


def _f1(precision: torch.Tensor, recall: torch.Tensor) -> torch.Tensor:
    total = precision + recall
    return torch.where(total > 0, 2 * precision * recall / total.clamp(min=1e-12), 0.0)


class SpanF1(Metric):
    """Micro precision / recall / F1 over spans: a predicted span counts only when its type,
    start and end all match a gold span (see ``rnnlab.tag_schemes.extract_spans``).

    ``update(preds (B, T) long, target (B, T) long)`` takes tag ids into ``labels``; steps where
    ``target == ignore_index`` are padding and dropped from both. ``compute()`` gives
    ``{"precision", "recall", "f1"}`` as float tensors (0 where undefined); ``report()`` the same
    per span type with its ``support`` (gold spans) plus a ``micro`` row.

    Spans are counted on the host, which on a GPU waits for the kernels queued so far; so updates
    are held on their device and counted ``COUNT_EVERY`` at a time, and before any result.
    """

    full_state_update = False
    higher_is_better = True
    #: Updates held before their spans are counted: one wait for a GPU per this many training steps.
    COUNT_EVERY = 64

    def __init__(self, labels: list[str], scheme: str, ignore_index: int = -100, **kwargs) -> None:
        super().__init__(**kwargs)
        check_scheme(scheme)
        self.labels = list(labels)
        self.scheme = scheme
        self.ignore_index = ignore_index
        # Span types are fixed by the label set, so every state has the same size on every process.
        parsed = [split_tag(label, scheme) for label in self.labels]
        self.types = sorted({tag[1] for tag in parsed if tag is not None and tag[0] != OUTSIDE})
        self._type_index = {kind: i for i, kind in enumerate(self.types)}
        for name in ("true_positives", "predicted", "gold"):
            self.add_state(name, default=torch.zeros(len(self.types), dtype=torch.long), dist_reduce_fx="sum")
        self._held: list[tuple[torch.Tensor, torch.Tensor]] = []  # (preds, target) of updates not yet counted

    def _spans(self, ids: list[int], keep: list[bool]) -> set[tuple[str, int, int]]:
        return set(extract_spans([self.labels[i] for i, k in zip(ids, keep) if k], self.scheme))

    def update(self, preds: torch.Tensor, target: torch.Tensor) -> None:
        """preds (B, T) long, target (B, T) long with ``ignore_index`` at padding."""
        self._held.append((preds.detach(), target.detach()))
        if len(self._held) >= self.COUNT_EVERY:
            self._count_held()

    def _count_held(self) -> None:
        """Add the held updates' spans to the states, counted in Python on the CPU: span
        extraction is sequential string logic."""
        held, self._held = self._held, []
        if not held:
            return
        counts = {name: [0] * len(self.types) for name in ("true_positives", "predicted", "gold")}
        for preds, target in held:
            preds, target = preds.cpu(), target.cpu()
            valid = target != self.ignore_index
            pred_ids = preds[valid]
            if ((pred_ids < 0) | (pred_ids >= len(self.labels))).any():
                raise ValueError(f"predicted tag ids must lie in [0, {len(self.labels)}) at valid steps")
            for pred_row, target_row, valid_row in zip(preds.tolist(), target.tolist(), valid.tolist()):
                predicted, gold = self._spans(pred_row, valid_row), self._spans(target_row, valid_row)
                for name, spans in (("true_positives", predicted & gold), ("predicted", predicted), ("gold", gold)):
                    for kind, _, _ in spans:
                        counts[name][self._type_index[kind]] += 1
        for name, values in counts.items():
            setattr(self, name, getattr(self, name) + torch.tensor(values).to(self.device, non_blocking=True))

    def sync(self, *args, **kwargs) -> None:
        """Count the held updates first: every result (compute, report) and DDP's sum come after a sync."""
        self._count_held()
        super().sync(*args, **kwargs)

    def reset(self) -> None:
        super().reset()
        self._held = []

    def compute(self) -> dict[str, torch.Tensor]:
        """Micro ``precision``, ``recall`` and ``f1`` over all span types (float tensors)."""
        return self._micro()

    def _micro(self) -> dict[str, torch.Tensor]:
        precision = _ratio(self.true_positives.sum(), self.predicted.sum())
        recall = _ratio(self.true_positives.sum(), self.gold.sum())
        return {"precision": precision, "recall": recall, "f1": _f1(precision, recall)}

    def report(self) -> dict[str, dict[str, float]]:
        """Per span type and ``micro``: ``{"precision", "recall", "f1", "support"}`` as Python numbers,
        over every process's updates (under DDP the states are summed across ranks first)."""
        with self.sync_context(dist_sync_fn=self.dist_sync_fn, should_sync=self._to_sync):
            return self._report()

    def _report(self) -> dict[str, dict[str, float]]:
        precision = _ratio(self.true_positives, self.predicted)
        recall = _ratio(self.true_positives, self.gold)
        f1 = _f1(precision, recall)
        rows = {
            kind: {
                "precision": precision[i].item(),
                "recall": recall[i].item(),
                "f1": f1[i].item(),
                "support": int(self.gold[i].item()),
            }
            for i, kind in enumerate(self.types)
        }
        rows["micro"] = {key: value.item() for key, value in self._micro().items()} | {"support": int(self.gold.sum())}
        return rows
