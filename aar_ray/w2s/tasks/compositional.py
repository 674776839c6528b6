"""Generated compositional sentiment: the label follows the sentence's logic (negation,
contrast, expectation reversal), so a bag-of-words teacher errs *systematically* on some
templates while a sentence encoder can learn the composition.
"""
from __future__ import annotations

import functools

import numpy as np

from aar_ray.w2s.tasks import TASKS, TaskData, TaskSpec, generate

SUBJECTS = ["movie", "food", "service", "hotel", "book", "concert", "flight", "phone", "game",
            "album", "restaurant", "show", "camera", "course", "trip", "staff"]
POSITIVE = ["great", "wonderful", "excellent", "delightful", "superb", "fantastic", "lovely",
            "brilliant", "charming", "impressive"]
NEGATIVE = ["terrible", "awful", "boring", "disappointing", "dreadful", "horrible", "bland",
            "mediocre", "annoying", "dull"]

# (template, whether the label keeps the deciding adjective's polarity). Half the templates
# flip it through words far from the adjective, paired with look-alikes that do not flip: the
# label is then an XOR that no linear bag of words can represent, so a bag-of-words teacher
# errs systematically on them while a sentence encoder can learn the composition.
TEMPLATES: list[tuple[str, bool]] = [
    ("The {x} was {a}.", True),
    ("The {x} was not {a}.", False),
    ("The {y} was {b}, but the {x} was {a}.", True),
    ("Although the {y} was {b}, the {x} was {a}.", True),
    ("I would never say the {x} was {a}.", False),
    ("I would always say the {x} was {a}.", True),
    ("It is not true that the {x} was {a}.", False),
    ("It is true that the {x} was {a}.", True),
    ("Nobody could claim the {x} was {a}.", False),
    ("Everybody could claim the {x} was {a}.", True),
    ("I expected the {x} to be {a}, and it was.", True),
    ("I expected the {x} to be {a}, but it was not.", False),
]


def _draw(rng: np.random.Generator) -> tuple[str, int]:
    template, keeps = TEMPLATES[rng.integers(len(TEMPLATES))]
    positive = bool(rng.integers(2))
    a = rng.choice(POSITIVE if positive else NEGATIVE)
    b = rng.choice(NEGATIVE if positive else POSITIVE)  # the distractor clause disagrees
    x, y = rng.choice(SUBJECTS, size=2, replace=False)
    return template.format(x=x, y=y, a=a, b=b), int(positive == keeps)


@functools.cache
def load(n: int = 12000) -> TaskData:
    return generate(n, 2023, _draw, ("negative", "positive"))


TASKS.add("compositional", TaskSpec(
    name="compositional",
    description="Generated reviews whose sentiment depends on negation and contrast.",
    load=load,
    default_size=8000,
    default_test_size=2000,
))
