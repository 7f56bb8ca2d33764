"""The Brown corpus (Francis & Kucera 1964/1979) in NLTK's layout: reader, tagsets, fixed split.

The corpus directory holds ``cats.txt`` (one ``<file id> <category>`` per line), ``CONTENTS``,
``README`` and the 500 files ``ca01`` ... ``cr09``. A file holds one sentence per line as
``word/tag`` tokens separated by spaces (a paragraph's first sentence starts with a tab), with
blank lines between. The letter after the ``c`` is the genre (15 of them, a to r).

Tagsets (``data.tagset``), from the finest:

* ``full``: the corpus's tag as written (lower case), e.g. ``np-tl``, ``ppss+bem``, ``fw-nn``.
* ``base``: without the ``-tl`` (title), ``-hl`` (headline) and ``-nc`` (cited word) suffixes
  and the ``fw-`` (foreign word) prefix. A contraction's compound tag keeps its parts, each
  stripped: ``ppss+bem``, ``pps+bez``. Two tags in the corpus lost their suffix's last letter
  (``fw-in+at-t``, ``ppss+ber-n``); ``-t`` and ``-n`` are stripped as well.
* ``two_letter``: the first two characters of the base tag's first part (the part before
  ``+``): ``nns`` -> ``nn``, ``vbd`` -> ``vb``, ``bedz*`` -> ``be``, ``pp$`` -> ``pp``,
  ``ppss+bem`` -> ``pp``, ``nil`` -> ``ni``; shorter tags (``.``, ``in``, ``''``) stay whole.
* ``universal``: the 12 tags of Petrov, Das & McDonald (2012), by the rules of
  :func:`universal_tag`.

The real corpus: 500 files, 57,340 sentences, 1,161,192 tokens (as NLTK's
``brown.tagged_sents()``); 472 distinct tags in ``full``, 188 in ``base``, 42 in ``two_letter``,
12 in ``universal``. :func:`brown_split` with ``seed=0`` gives (files / sentences / tokens):
train 396 / 45,098 / 918,909; val 52 / 6,005 / 120,900; test 52 / 6,237 / 121,383.
"""

from __future__ import annotations

import random
import re
import shlex
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

from rnnlab.data.conll import TaggedSentence
from rnnlab.data.readers import read_utf8, split_lines
from rnnlab.errors import UserError, check_choice, data_error

TAGSETS: tuple[str, ...] = ("universal", "two_letter", "base", "full")

#: A corpus file's name: "c", the genre letter, two digits.
FILE_ID = re.compile(r"c[a-r]\d\d")

# Suffixes that mark a token's context, not its part of speech (the truncated "-t" and "-n" occur too).
_CONTEXT_SUFFIX = re.compile(r"(?:-(?:tl|hl|nc|t|n))+$")

# The Brown tags (Francis & Kucera's manual) -> universal tags. A tag with a trailing "*"
# (negated: "isn't" bez*, "can't" md*) or "$" (possessive: nn$, np$) maps as the tag without it.
# Where NLTK's en-brown.map (the reference for reported Brown-universal accuracies) differs from
# a reading of the manual, we follow it; those entries are marked "NLTK".
_UNIVERSAL: dict[str, str] = {
    # punctuation: sentence closers, comma, colon/semicolon/dash, brackets, quotes
    **dict.fromkeys([".", ",", ":", "--", "(", ")", "'", "''", "``"], "."),
    "*": "ADV",  # "not", "n't": an adverb, as PTB's RB (NLTK)
    "abl": "PRT",  # pre-qualifier: quite, rather (NLTK)
    "abn": "PRT",  # pre-quantifier: all, half, many (NLTK)
    "abx": "DET",  # pre-quantifier/double conjunction: both
    "ap": "ADJ",  # post-determiner: many, few, several, next, last, other (NLTK)
    "ap$": "PRT",  # "other's" (NLTK)
    "at": "DET",  # article
    # be, do, have in every form, and modals
    **dict.fromkeys(["be", "bed", "bedz", "beg", "bem", "ben", "ber", "bez"], "VERB"),
    **dict.fromkeys(["do", "dod", "doz"], "VERB"),
    **dict.fromkeys(["hv", "hvd", "hvg", "hvn", "hvz"], "VERB"),
    "md": "VERB",
    "cc": "CONJ",  # coordinating conjunction
    "cs": "ADP",  # subordinating conjunction: PTB tags these IN, i.e. ADP (NLTK)
    "cd": "NUM",
    "od": "ADJ",  # ordinal: first, 2nd (PTB: JJ)
    **dict.fromkeys(["dt", "dti", "dts", "dtx"], "DET"),  # this, some/any, these, either
    "ex": "PRT",  # existential "there": a function word (NLTK; PTB's EX is DET)
    "in": "ADP",
    **dict.fromkeys(["jj", "jjr", "jjs", "jjt"], "ADJ"),
    **dict.fromkeys(["nn", "nns", "np", "nps", "nr", "nrs"], "NOUN"),  # nr: adverbial noun (home, Sunday)
    "pn": "NOUN",  # nominal pronoun: everybody, nothing (NLTK)
    "pp$": "DET",  # possessive determiner: my, his, their (NLTK)
    **dict.fromkeys(["pp$$", "ppl", "ppls", "ppo", "pps", "ppss"], "PRON"),  # mine; myself; me; he; I, we
    **dict.fromkeys(["ql", "qlp", "wql"], "ADV"),  # qualifiers: very, enough, how
    **dict.fromkeys(["rb", "rbr", "rbt", "rn", "wrb"], "ADV"),  # rn: nominal adverb (here, then)
    "rp": "PRT",  # adverbial particle: up, off
    "to": "PRT",  # infinitive marker
    "uh": "PRT",  # interjection (NLTK; PTB's UH is X)
    **dict.fromkeys(["vb", "vbd", "vbg", "vbn", "vbz"], "VERB"),
    "wdt": "DET",  # wh-determiner: which, what
    "wp$": "PRT",  # whose (NLTK)
    **dict.fromkeys(["wpo", "wps"], "PRON"),  # whom, who
    "nil": "X",  # no tag assigned
}


def brown_file_ids(corpus_dir: str | Path) -> list[str]:
    """The corpus's file ids as listed in its ``cats.txt``, sorted (``ca01`` ... ``cr09``)."""
    cats = Path(corpus_dir) / "cats.txt"
    file_ids = []
    for number, line in split_lines(read_utf8(cats)):
        if not line.strip():
            continue
        file_id = line.split()[0]
        if not FILE_ID.fullmatch(file_id):
            raise data_error(cats, number, f"{file_id!r} is not a Brown file id (c, a genre letter a-r, two digits)")
        file_ids.append(file_id)
    return sorted(file_ids)


def locate_brown(corpus_dir: str | Path) -> Path:
    """``corpus_dir`` when it holds the corpus (``cats.txt`` and every file it lists), else a UserError
    telling how to fetch it."""
    root = Path(corpus_dir)
    if not (root / "cats.txt").is_file():
        problem, force = "no cats.txt", ""
    else:
        missing = [file_id for file_id in brown_file_ids(root) if not (root / file_id).is_file()]
        if not missing:
            return root
        problem, force = f"{len(missing)} file(s) listed in cats.txt missing, e.g. {missing[0]}", " --force"
    command = f"python scripts/fetch_data.py brown --data-dir {shlex.quote(str(root.parent))}{force}"
    # The script always writes <data-dir>/brown.
    also = "" if root.name == "brown" else f", then set data.corpus_dir={root.parent / 'brown'}"
    raise UserError(f"Brown corpus not found at {root} ({problem}); fetch it once with: {command}{also}")


def read_brown(corpus_dir: str | Path, tagset: str = "universal") -> list[TaggedSentence]:
    """Every tagged sentence of the corpus, in file order, tags in ``tagset`` (see the module doc).

    A sentence is a non-blank line; a token ``word/tag`` splits at its last ``/`` (words such as
    ``1/2`` hold one). Words are kept as written. ``source`` is ``"<file id>:<line>"``.
    """
    check_choice("data.tagset", tagset, TAGSETS)
    root = Path(corpus_dir)
    convert = _CONVERTERS[tagset]
    converted: dict[str, str] = {}  # the corpus has 472 distinct tags and 1.16M tokens
    sentences = []
    for file_id in brown_file_ids(root):
        path = root / file_id
        for number, line in split_lines(read_utf8(path)):
            words, tags = [], []
            for token in line.split():
                word, slash, tag = token.rpartition("/")
                if not slash or not word or not tag:
                    raise data_error(path, number, f"token {token!r} is not word/tag")
                words.append(word)
                if tag not in converted:
                    converted[tag] = convert(tag)
                tags.append(converted[tag])
            if words:
                sentences.append(TaggedSentence(tuple(words), tuple(tags), f"{file_id}:{number}"))
    return sentences


def brown_split(sentences: list[TaggedSentence], seed: int = 0) -> dict[str, list[TaggedSentence]]:
    """The fixed train/val/test split of :func:`read_brown`'s sentences, by whole files (documents).

    Per genre (the letter of the file id), the files are sorted, shuffled with ``seed`` (one
    ``random.Random(seed)`` over the genres in order a, b, ... r) and dealt out: the first
    10% of the genre's files, rounded half up (at least 1 when it has 2 or more), to test, as many again
    (at least 1 when it has 3 or more) to val, the rest to train. No document spans two splits and
    every genre is in every split. Each split keeps the input order.
    """
    files: dict[str, list[TaggedSentence]] = defaultdict(list)
    for sentence in sentences:
        files[sentence.source.split(":")[0]].append(sentence)
    genres: dict[str, list[str]] = defaultdict(list)
    for file_id in sorted(files):
        genres[file_id[1]].append(file_id)
    rng = random.Random(seed)
    split_of: dict[str, str] = {}
    for genre in sorted(genres):
        file_ids = genres[genre]
        rng.shuffle(file_ids)
        held = max(1, (len(file_ids) + 5) // 10)
        n_test = held if len(file_ids) >= 2 else 0
        n_val = held if len(file_ids) >= 3 else 0
        for position, file_id in enumerate(file_ids):
            split_of[file_id] = "test" if position < n_test else "val" if position < n_test + n_val else "train"
    splits: dict[str, list[TaggedSentence]] = {"train": [], "val": [], "test": []}
    for sentence in sentences:
        splits[split_of[sentence.source.split(":")[0]]].append(sentence)
    return splits


def base_tag(tag: str) -> str:
    """``tag`` without the ``fw-`` prefix and each part's context suffixes: ``fw-in+at-tl`` -> ``in+at``."""
    return "+".join(_CONTEXT_SUFFIX.sub("", part) for part in tag.removeprefix("fw-").split("+"))


def two_letter_tag(tag: str) -> str:
    """The first two characters of the base tag's first part: ``ppss+bem`` -> ``pp``, ``nns-tl`` -> ``nn``."""
    return base_tag(tag).split("+")[0][:2]


def universal_tag(tag: str) -> str:
    """The universal tag (Petrov et al. 2012) of a Brown tag.

    Foreign words (``fw-``) are X. Otherwise the base tag's first part decides, by the table
    above, after dropping a trailing ``*`` or ``$`` when the tag itself is not listed: a
    contraction takes its first word's class (``np+bez`` "John's" is NOUN), except that a
    pronoun's (``pps+bez`` "it's", ``ppss+bem`` "I'm", ``wps+bez`` "who's") is PRT, as in NLTK.
    A tag outside the table (none occurs in the corpus) is X.

    On the whole corpus each universal tag's count is within 136 tokens of NLTK's
    ``brown.tagged_words(tagset="universal")``; the rest differ in rare contraction and
    possessive tags (``nn+bez``, ``rb+bez``, ``cd$`` ...), which NLTK mostly makes PRT.
    """
    if tag.startswith("fw-"):
        return "X"
    first, *rest = base_tag(tag).split("+")
    universal = _universal_of_base(first) or "X"
    return "PRT" if rest and universal == "PRON" else universal


def _universal_of_base(tag: str) -> str | None:
    """The table's universal tag for a base tag without ``+``; None when it has none."""
    return _UNIVERSAL.get(tag) or _UNIVERSAL.get(tag.rstrip("*$"))


_CONVERTERS: dict[str, Callable[[str], str]] = {
    "full": str,
    "base": base_tag,
    "two_letter": two_letter_tag,
    "universal": universal_tag,
}
