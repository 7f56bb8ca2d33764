"""Heads: turn backbone outputs (B, T, D) into task outputs. They know nothing of data files or Lightning."""

from rnnlab.heads.classification import ClassificationHead
from rnnlab.heads.pooling import POOLINGS, SequencePooling

__all__ = ["POOLINGS", "ClassificationHead", "SequencePooling"]
