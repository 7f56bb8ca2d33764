"""Data: readers for user files, built-in datasets, vocabulary, tokenizers, batching. Knows nothing of models."""

from rnnlab.data.bbc_news import BBCNewsDataModule, load_bbc_news
from rnnlab.data.datamodule import SequenceDataModule
from rnnlab.data.synthetic import KeywordsDataModule
from rnnlab.data.tagging import BrownPOSDataModule, ConllDataModule, TaggingDataModule
from rnnlab.data.text_classification import TextClassificationDataModule, TextFileDataModule

__all__ = [
    "BBCNewsDataModule",
    "BrownPOSDataModule",
    "ConllDataModule",
    "KeywordsDataModule",
    "SequenceDataModule",
    "TaggingDataModule",
    "TextClassificationDataModule",
    "TextFileDataModule",
    "load_bbc_news",
]
