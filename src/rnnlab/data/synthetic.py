"""``data=keywords``: a generated text classification task for tests and smoke runs.

Each text is random filler words (``w0`` .. ``wN``) of random length with one class keyword
(``k<class>``) at a random position; the label is that class. Any backbone and pooling can learn
it, it needs long-range memory for ``pooling=last`` when the keyword is early, and its lengths
vary widely, which exercises padding and bucketing.
"""

from __future__ import annotations

import random
from typing import Any

from rnnlab.data.readers import TextExample
from rnnlab.data.text_classification import TextClassificationDataModule
from rnnlab.errors import UserError


def generate_keyword_texts(
    count: int, num_classes: int, num_fillers: int, min_length: int, max_length: int, seed: int, split: str
) -> list[TextExample]:
    rng = random.Random(f"{seed}-{split}")
    examples = []
    for i in range(count):
        label = rng.randrange(num_classes)
        words = [f"w{rng.randrange(num_fillers)}" for _ in range(rng.randint(min_length, max_length) - 1)]
        words.insert(rng.randint(0, len(words)), f"k{label}")
        examples.append(TextExample(text=" ".join(words), label=f"class{label}", source=f"keywords:{split}:{i}"))
    return examples


class KeywordsDataModule(TextClassificationDataModule):
    """Generated keyword spotting; ``generator_seed`` fixes the data, independent of the training seed."""

    def __init__(
        self,
        num_classes: int = 4,
        num_train: int = 2000,
        num_val: int = 200,
        num_test: int = 200,
        num_fillers: int = 50,
        min_length: int = 2,
        max_length_generated: int = 40,
        generator_seed: int = 0,
        **options: Any,
    ) -> None:
        super().__init__(**options)
        if num_classes < 2 or min_length < 1 or max_length_generated < min_length:
            raise UserError("data=keywords needs num_classes >= 2 and 1 <= min_length <= max_length_generated")
        self.sizes = {"train": num_train, "val": num_val, "test": num_test}
        self.generator = dict(
            num_classes=num_classes,
            num_fillers=num_fillers,
            min_length=min_length,
            max_length=max_length_generated,
            seed=generator_seed,
        )

    def read_split(self, split: str) -> list[TextExample]:
        return generate_keyword_texts(self.sizes[split], split=split, **self.generator)
