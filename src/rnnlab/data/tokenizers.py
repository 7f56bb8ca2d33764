"""Text -> token lists. Plain picklable classes, so DataLoader workers can use them."""

from __future__ import annotations

import re

from rnnlab.errors import check_choice

# A word is a run of word characters (unicode letters, digits, underscore), optionally joined by
# inner apostrophes (don't, o'clock, also the typographic ’); any other non-space character is a
# token of its own.
_WORD_RE = re.compile(r"\w+(?:['\u2019]\w+)*|[^\w\s]")

TOKENIZERS: tuple[str, ...] = ("word", "char")


class WordTokenizer:
    """Words and single punctuation symbols: ``"Hello, world!"`` -> ``["hello", ",", "world", "!"]``."""

    def __init__(self, lowercase: bool = True) -> None:
        self.lowercase = lowercase

    def tokenize(self, text: str) -> list[str]:
        if self.lowercase:
            text = text.lower()
        return _WORD_RE.findall(text)

    def __repr__(self) -> str:
        return f"WordTokenizer(lowercase={self.lowercase})"


class CharTokenizer:
    """Characters; each whitespace run becomes one ``" "`` token and the ends are stripped."""

    def __init__(self, lowercase: bool = False) -> None:
        self.lowercase = lowercase

    def tokenize(self, text: str) -> list[str]:
        if self.lowercase:
            text = text.lower()
        return list(" ".join(text.split()))

    def __repr__(self) -> str:
        return f"CharTokenizer(lowercase={self.lowercase})"


Tokenizer = WordTokenizer | CharTokenizer


def build_tokenizer(name: str, lowercase: bool) -> Tokenizer:
    """The tokenizer named by the config value ``data.tokenizer`` (word | char)."""
    check_choice("data.tokenizer", name, TOKENIZERS)
    if name == "word":
        return WordTokenizer(lowercase=lowercase)
    return CharTokenizer(lowercase=lowercase)
