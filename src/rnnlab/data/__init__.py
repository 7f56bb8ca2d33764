"""Data: readers for user files, built-in datasets, vocabulary, tokenizers, batching. Knows nothing of models."""

from rnnlab.data.bbc_news import BBCNewsDataModule, load_bbc_news
from rnnlab.data.datamodule import SequenceDataModule
from rnnlab.data.language_model import (
    BBCNewsLMDataModule,
    BrownLMDataModule,
    LanguageModelDataModule,
    TextLMDataModule,
)
from rnnlab.data.synthetic import KeywordsDataModule
from rnnlab.data.tagging import BrownPOSDataModule, ConllDataModule, TaggingDataModule
from rnnlab.data.text_classification import TextClassificationDataModule, TextFileDataModule

__all__ = [
    "BBCNewsDataModule",
    "BBCNewsLMDataModule",
    "BrownLMDataModule",
    "BrownPOSDataModule",
    "ConllDataModule",
    "KeywordsDataModule",
    "LanguageModelDataModule",
    "SequenceDataModule",
    "TaggingDataModule",
    "TextClassificationDataModule",
    "TextFileDataModule",
    "TextLMDataModule",
    "load_bbc_news",
]
