"""Generated code review: short Python functions, half with an injected bug, labelled buggy or
correct; the offline stand-in for the seed's code task (the hub's MBPP one is `code_review`).

Each family is a pair of opposite intents (largest / smallest, upper / lower case, ...) that
share one body; the bug swaps the call that implements the intent for its opposite
(`return min(xs)` in `def largest(xs)`). Whether a snippet is correct is then the XOR of the
function's name and a call some lines away. Most snippets carry a family's first intent, so a
bag-of-words teacher learns "`max` = correct" and is wrong on nearly every snippet of the
second intent: the systematic error of a reviewer who checks the familiar case. A sentence
encoder with an MLP head can learn the interaction. Calls are words, not operators: the
bag of words drops one-character tokens, and MiniLM reads `<` / `>` poorly.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from aar_ray.w2s.tasks import TASKS, TaskData, TaskSpec, generate


@dataclass(frozen=True)
class Family:
    names: tuple[tuple[str, ...], tuple[str, ...]]  # function names of intent 0, of intent 1
    calls: tuple[str, str]  # the call that implements intent 0, intent 1
    body: str  # {f}: name, {t}: call, {xs} / {w}: argument (a list / a string)


FAMILIES = {
    "extreme": Family((("largest", "maximum", "max_value", "biggest"),
                       ("smallest", "minimum", "min_value", "lowest")), ("max", "min"),
                      "def {f}({xs}):\n    if not {xs}:\n        return None\n"
                      "    return {t}({xs})"),
    "case": Family((("to_upper", "shout", "upper_case", "all_caps"),
                    ("to_lower", "whisper", "lower_case", "no_caps")), ("upper", "lower"),
                   "def {f}({w}):\n    {w} = {w}.strip()\n    return {w}.{t}()"),
    "affix": Family((("has_prefix", "begins_with", "starts_with", "check_start"),
                     ("has_suffix", "finishes_with", "ends_with", "check_end")),
                    ("startswith", "endswith"), "def {f}({w}, part):\n    return {w}.{t}(part)"),
    "quantifier": Family((("all_positive", "every_positive", "none_negative", "only_positive"),
                          ("any_positive", "some_positive", "one_positive", "has_positive")),
                         ("all", "any"), "def {f}({xs}):\n    return {t}(v > 0 for v in {xs})"),
    "search": Family((("first_index", "find_first", "leftmost", "earliest_position"),
                      ("last_index", "find_last", "rightmost", "latest_position")),
                     ("find", "rfind"), "def {f}({w}, part):\n    return {w}.{t}(part)"),
    "rounding": Family((("round_up", "ceiling_of", "next_integer", "up_to_whole"),
                        ("round_down", "floor_of", "previous_integer", "down_to_whole")),
                       ("ceil", "floor"), "import math\n\n\ndef {f}({xs}):\n"
                                          "    return math.{t}({xs})"),
}
LISTS = ["xs", "items", "values", "nums", "data", "scores", "vals", "seq", "elems", "arr",
         "entries", "numbers"]
STRINGS = ["text", "s", "word", "line", "name", "msg", "label", "title", "key", "token",
           "field", "entry"]
COMMENTS = ["helper", "utility", "from utils.py", "reviewed", "TODO: tests", "added in v2",
            "hot path", "see issue 12", "public API", "keep in sync with docs", "used by the CLI",
            "pure function", "no side effects", "called once per request", "legacy",
            "vendored", "do not inline", "cheap", "tested in test_util.py", "fast path",
            "refactored", "moved from core.py", "small helper", "simple version"]
SECOND_INTENT_SHARE = 0.25  # the minority the bag-of-words teacher gets wrong


def snippet(rng: np.random.Generator) -> tuple[str, str, int, bool]:
    """One snippet: (text, family, intent, correct)."""
    family = list(FAMILIES)[rng.integers(len(FAMILIES))]
    fam = FAMILIES[family]
    intent = int(rng.random() < SECOND_INTENT_SHARE)
    correct = bool(rng.integers(2))
    names = fam.names[intent]
    text = fam.body.format(f=names[rng.integers(len(names))],
                           t=fam.calls[intent if correct else 1 - intent],
                           xs=LISTS[rng.integers(len(LISTS))],
                           w=STRINGS[rng.integers(len(STRINGS))])
    comment = int(rng.integers(len(COMMENTS) + 1))  # or none
    if comment < len(COMMENTS):
        text = f"# {COMMENTS[comment]}\n{text}"
    return text, family, intent, correct


def _draw(rng: np.random.Generator) -> tuple[str, int]:
    text, _, _, correct = snippet(rng)
    return text, int(correct)


@functools.cache
def load(n: int = 6000) -> TaskData:
    return generate(n, 2026, _draw, ("buggy", "correct"))


TASKS.add("code_bugs", TaskSpec(
    name="code_bugs",
    description="Generated short Python functions, some with an injected bug (the opposite "
                "call of the function's intent): a code-review stand-in.",
    load=load,
    default_size=4000,
    default_test_size=1000,
))
