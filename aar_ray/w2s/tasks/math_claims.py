"""Generated math verification: arithmetic claims, true or false, standing in for the seed's
math task. Each claim says whether `a OP b` comes out larger or smaller than `a` ("91 divided by
4 is larger than 91."); the label is the arithmetic's truth.

Whether a claim is true is the XOR of two words far apart: does the operation grow or shrink a
(plus, times vs minus, divided by), and does the claim say larger or smaller. Most claims say
larger, so a bag-of-words teacher learns "growing operation = true" and is wrong on nearly every
"smaller" claim: a systematic error, like a weak grader that trusts a familiar pattern. A
sentence encoder with an MLP head can learn the interaction. Exact equalities ("7 + 5 = 12")
were tried first: MiniLM's mean-pooled features cannot check them (ceiling at chance), so the
claims ask for the direction of a result, which the student can learn, not for its digits.
"""
from __future__ import annotations

import functools

import numpy as np

from aar_ray.w2s.tasks import TASKS, TaskData, TaskSpec, generate

# operation word -> whether a OP b > a for every a >= 10 and 2 <= b <= 9
OPERATIONS = {"plus": True, "times": True, "multiplied by": True, "minus": False,
              "divided by": False}
LARGER = ["larger than", "greater than", "more than", "bigger than"]
SMALLER = ["smaller than", "less than", "lower than", "below"]
TEMPLATES = ["{a} {op} {b} is {rel} {a}.", "The result of {a} {op} {b} is {rel} {a}.",
             "Computing {a} {op} {b} gives a number {rel} {a}.",
             "{a} {op} {b} comes out {rel} {a}.", "We get something {rel} {a} from {a} {op} {b}."]
SMALLER_SHARE = 0.3  # the minority the bag-of-words teacher gets wrong


GROWS = [op for op, up in OPERATIONS.items() if up]
SHRINKS = [op for op, up in OPERATIONS.items() if not up]


def _draw(rng: np.random.Generator) -> tuple[str, int]:
    true = bool(rng.integers(2))
    says_smaller = bool(rng.random() < SMALLER_SHARE)
    # a claim is true when the operation moves a the way the claim says
    ops = SHRINKS if says_smaller == true else GROWS
    op = ops[rng.integers(len(ops))]
    rels = SMALLER if says_smaller else LARGER
    text = TEMPLATES[rng.integers(len(TEMPLATES))].format(
        a=int(rng.integers(10, 100)), b=int(rng.integers(2, 10)), op=op,
        rel=rels[rng.integers(len(rels))])
    return text, int(true)


@functools.cache
def load(n: int = 6000) -> TaskData:
    return generate(n, 2026, _draw, ("false", "true"))


TASKS.add("math_claims", TaskSpec(
    name="math_claims",
    description="Generated arithmetic claims (is a OP b larger or smaller than a?), true or "
                "false: a math-verification stand-in.",
    load=load,
    default_size=4000,
    default_test_size=1000,
))
