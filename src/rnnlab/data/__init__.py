"""Data: readers for user files, built-in datasets, vocabulary, tokenizers, batching. Knows nothing of models.

The data modules below are imported on first use, so that light tools (e.g. scripts/fetch_data.py,
which needs only :mod:`rnnlab.data.brown`) do not pay for importing torch and Lightning.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "BBCNewsDataModule": "bbc_news",
    "load_bbc_news": "bbc_news",
    "BBCNewsLMDataModule": "language_model",
    "BrownLMDataModule": "language_model",
    "LanguageModelDataModule": "language_model",
    "TextLMDataModule": "language_model",
    "BrownPOSDataModule": "tagging",
    "ConllDataModule": "tagging",
    "TaggingDataModule": "tagging",
    "KeywordsDataModule": "synthetic",
    "CmudictG2PDataModule": "cmudict_g2p",
    "read_cmudict": "cmudict_g2p",
    "DigitsNamesDataModule": "digits",
    "JapaneseVowelsDataModule": "japanese_vowels",
    "load_japanese_vowels": "japanese_vowels",
    "CopyDataModule": "seq2seq",
    "ReverseDataModule": "seq2seq",
    "Seq2SeqCollator": "seq2seq",
    "Seq2SeqDataModule": "seq2seq",
    "TsvPairsDataModule": "seq2seq",
    "AddingDataModule": "series",
    "AirlineDataModule": "series",
    "ForecastingDataModule": "series",
    "SeriesCSVDataModule": "series",
    "SeriesDataModule": "series",
    "SunspotsDataModule": "series",
    "denormalize": "series",
    "normalize": "series",
    "read_series_csv": "series",
    "SequenceDataModule": "datamodule",
    "TextClassificationDataModule": "text_classification",
    "TextFileDataModule": "text_classification",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
