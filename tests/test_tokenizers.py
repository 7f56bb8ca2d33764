from __future__ import annotations

import pickle

import pytest

from rnnlab.data.tokenizers import CharTokenizer, WordTokenizer, build_tokenizer
from rnnlab.errors import UserError


def test_word_tokenizer_splits_punctuation_and_lowercases() -> None:
    assert WordTokenizer().tokenize("Hello, world!") == ["hello", ",", "world", "!"]


def test_word_tokenizer_keeps_inner_apostrophes() -> None:
    tokens = WordTokenizer().tokenize("Don't stop at 5 o'clock 'quoted'")
    assert tokens == ["don't", "stop", "at", "5", "o'clock", "'", "quoted", "'"]


def test_word_tokenizer_unicode_and_case() -> None:
    assert WordTokenizer(lowercase=False).tokenize("Café naïve 東京 x2") == ["Café", "naïve", "東京", "x2"]
    assert WordTokenizer().tokenize("ÉCOLE…ok") == ["école", "…", "ok"]
    assert WordTokenizer().tokenize("   ") == []


def test_char_tokenizer_collapses_whitespace() -> None:
    assert CharTokenizer().tokenize("  Ab \t\n c ") == ["A", "b", " ", "c"]
    assert CharTokenizer(lowercase=True).tokenize("AB") == ["a", "b"]


def test_build_tokenizer() -> None:
    assert isinstance(build_tokenizer("word", lowercase=True), WordTokenizer)
    char = build_tokenizer("char", lowercase=True)
    assert isinstance(char, CharTokenizer) and char.lowercase
    with pytest.raises(UserError, match="data.tokenizer"):
        build_tokenizer("bpe", lowercase=True)


@pytest.mark.parametrize("tokenizer", [WordTokenizer(lowercase=False), CharTokenizer(lowercase=True)])
def test_tokenizers_pickle(tokenizer: WordTokenizer | CharTokenizer) -> None:
    clone = pickle.loads(pickle.dumps(tokenizer))
    assert clone.tokenize("Hi there, You") == tokenizer.tokenize("Hi there, You")
