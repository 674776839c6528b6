"""Generated compositional sentiment: the label follows the sentence's logic (negation,
contrast, expectation reversal), so a bag-of-words teacher errs *systematically* on some
templates while a sentence encoder can learn the composition.
"""
from __future__ import annotations

import functools

import numpy as np

from aar_ray.w2s.tasks import TASKS, TaskData, TaskSpec

SUBJECTS = ["movie", "food", "service", "hotel", "book", "concert", "flight", "phone", "game",
            "album", "restaurant", "show", "camera", "course", "trip", "staff"]
POSITIVE = ["great", "wonderful", "excellent", "delightful", "superb", "fantastic", "lovely",
            "brilliant", "charming", "impressive"]
NEGATIVE = ["terrible", "awful", "boring", "disappointing", "dreadful", "horrible", "bland",
            "mediocre", "annoying", "dull"]

# (template, how the label follows from the polarity p of the adjective that decides it)
TEMPLATES: list[tuple[str, bool]] = [
    ("The {x} was {a}.", True),
    ("The {x} was not {a}.", False),
    ("The {y} was {b}, but the {x} was {a}.", True),
    ("Although the {y} was {b}, the {x} was {a}.", True),
    ("I would never say the {x} was {a}.", False),
    ("The {x} was far from {a}.", False),
    ("I expected the {x} to be {a}, and it was.", True),
    ("I expected the {x} to be {a}, but it was not.", False),
]


@functools.cache
def load(n: int = 12000) -> TaskData:
    rng = np.random.default_rng(2023)
    seen: set[str] = set()
    texts, labels = [], []
    while len(texts) < n:
        template, keeps = TEMPLATES[rng.integers(len(TEMPLATES))]
        positive = bool(rng.integers(2))
        a = rng.choice(POSITIVE if positive else NEGATIVE)
        b = rng.choice(NEGATIVE if positive else POSITIVE)  # the distractor clause disagrees
        x, y = rng.choice(SUBJECTS, size=2, replace=False)
        text = template.format(x=x, y=y, a=a, b=b)
        if text in seen:
            continue
        seen.add(text)
        texts.append(text)
        labels.append(int(positive == keeps))
    return TaskData(texts, np.array(labels), ("negative", "positive"))


TASKS.add("compositional", TaskSpec(
    name="compositional",
    description="Generated reviews whose sentiment depends on negation and contrast.",
    load=load,
    default_size=8000,
    default_test_size=2000,
))
