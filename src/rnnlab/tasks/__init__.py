"""Tasks: LightningModules that join a backbone and a head and own losses, metrics and logging."""

from rnnlab.tasks.base import RecurrentTask
from rnnlab.tasks.classification import SequenceClassifier
from rnnlab.tasks.forecasting import Forecaster
from rnnlab.tasks.language_model import LanguageModel
from rnnlab.tasks.seq2seq import Seq2SeqTask
from rnnlab.tasks.tagging import SequenceTagger

__all__ = ["Forecaster", "LanguageModel", "RecurrentTask", "Seq2SeqTask", "SequenceClassifier", "SequenceTagger"]
