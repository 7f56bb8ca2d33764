"""Heads: turn backbone outputs (B, T, D) into task outputs. They know nothing of data files or Lightning."""

from rnnlab.heads.classification import ClassificationHead
from rnnlab.heads.crf import LinearChainCRF
from rnnlab.heads.pooling import POOLINGS, SequencePooling
from rnnlab.heads.tagging import DECODERS, TaggingHead

__all__ = ["DECODERS", "POOLINGS", "ClassificationHead", "LinearChainCRF", "SequencePooling", "TaggingHead"]
