"""Recurrent backbones: the shared encoder and the textbook reference cells."""

from __future__ import annotations

from rnnlab.backbones.recurrent import RecurrentBackbone
from rnnlab.backbones.reference import ReferenceGRU, ReferenceLSTM, ReferenceRNN

__all__ = ["RecurrentBackbone", "ReferenceGRU", "ReferenceLSTM", "ReferenceRNN"]
