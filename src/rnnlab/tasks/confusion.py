"""A confusion matrix and macro F1 counted on the device without making the host wait.

torchmetrics' ``MulticlassConfusionMatrix`` and ``MulticlassF1Score(average="macro")`` count with
``torch.bincount``, whose CUDA kernel reads the input's maximum on the host to size its output:
every ``update`` waits for the GPU to finish the step. Here the counts are one matrix product of
one-hot encodings, which only queues kernels.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torchmetrics import Metric


class ConfusionCounts(Metric):
    """Counts of (gold, predicted) class pairs: ``compute()`` gives a (C, C) int64 matrix [gold, predicted].

    ``update(predicted, target)`` takes two same-shape long tensors of class ids in [0, C), any
    shape (flattened). Ids outside that range (IGNORE_INDEX at padding) count nowhere; they are not
    checked, since a check would read values on the host.
    """

    full_state_update = False
    is_differentiable = False

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.add_state("counts", torch.zeros(num_classes, num_classes, dtype=torch.long), dist_reduce_fx="sum")
        # Not persistent: derived from num_classes, and checkpoints stay as they were with torchmetrics.
        self.register_buffer("classes", torch.arange(num_classes), persistent=False)

    def update(self, predicted: Tensor, target: Tensor) -> None:
        """predicted, target: (...) long class ids, same shape."""
        # One-hot (N, C) rows, then gold.T @ pred (C, C). float64, not float32: every count is exact (below
        # 2**53), and autocast (mixed precision) leaves float64 alone, where it would multiply float32 in float16.
        gold = (target.reshape(-1, 1) == self.classes).double()
        pred = (predicted.reshape(-1, 1) == self.classes).double()
        self.counts += (gold.T @ pred).long()

    def compute(self) -> Tensor:
        """(C, C) int64 counts [gold, predicted]."""
        return self.counts


class MacroF1(ConfusionCounts):
    """Macro-averaged F1 as torchmetrics' ``MulticlassF1Score(num_classes, average="macro")`` gives it.

    A class counts in the average only if it was predicted or gold at least once (tp + fp + fn > 0);
    one predicted but never gold, or gold but never predicted, has F1 0. With nothing counted, 0 (not NaN).
    ``compute()`` gives a 0-dim float tensor.
    """

    higher_is_better = True

    def compute(self) -> Tensor:
        # The same float32 operations in the same order as torchmetrics 1.9 (_fbeta_reduce,
        # _adjust_weights_safe_divide, _safe_divide), so the values are equal, not just close.
        tp = self.counts.diag()
        fp = self.counts.sum(0) - tp
        fn = self.counts.sum(1) - tp
        denominator = 2.0 * tp + fn + fp
        f1 = torch.where(denominator != 0, 2.0 * tp / denominator, 0.0)
        # torch.where rather than torchmetrics' boolean-mask assignment, which waits for a GPU.
        weights = (tp + fp + fn != 0).float()
        total = weights.sum()
        return torch.where(total != 0, weights * f1 / total, 0.0).sum()
