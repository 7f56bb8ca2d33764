"""Recurrent backbones: the shared encoder and the textbook reference cells."""

from __future__ import annotations

from rnnlab.backbones.char_encoder import CharWordEncoder
from rnnlab.backbones.recurrent import RecurrentBackbone
from rnnlab.backbones.reference import ReferenceGRU, ReferenceLSTM, ReferenceRNN
from rnnlab.backbones.vector import VectorEncoder

__all__ = ["CharWordEncoder", "RecurrentBackbone", "ReferenceGRU", "ReferenceLSTM", "ReferenceRNN", "VectorEncoder"]
