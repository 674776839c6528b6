"""The seed's tasks, from the Hugging Face hub (GPU clusters with internet): chat preference
(Anthropic/hh-rlhf) and the two held-out transfer tasks, math verification (openai/gsm8k) and
code review (google-research-datasets/mbpp).

Each task is a pure function from an iterable of dataset rows (dicts) to `TaskData`, so tests
feed fake rows with no network; `load_*` only fetches the rows with `datasets`, imported lazily
(it is in the `gpu` extra). Every task is deterministic (sorted, seeded), deduplicated and
exactly class-balanced, and texts are cut so that the part that decides the label survives
right-truncation at 512 tokens (about 2,000 characters of English).

No text may contain `PAIR_SEP` except in a pairwise task (chat preference), whose spec says
`pairwise=True`: head-mode features of its texts are f(A) - f(B).
"""
from __future__ import annotations

import ast
import functools
import io
import itertools
import os
import tokenize
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from aar_ray.w2s.pinning import check_revision
from aar_ray.w2s.tasks import PAIR_SEP, TASKS, TaskData, TaskSpec

HH_RLHF = "Anthropic/hh-rlhf"
GSM8K = ("openai/gsm8k", "main")
MBPP = ("google-research-datasets/mbpp", "full")
# Hub commits every load is pinned to, read from the snapshot folders
# (datasets--openai--gsm8k/snapshots/<commit>) of public checkouts; not checked against the hub
# from here (no internet).
REVISIONS = {
    HH_RLHF: "09be8c5bbc57cb3887f3a9732ad6aa7ec602a1fa",
    GSM8K[0]: "740312add88f781978c0658806c59bc2815b9866",
    MBPP[0]: "4bb6404fdc6cacfda99d4ac4205087b89d32030c",
}

MAX_CONTEXT_CHARS = 1000  # the dialogue so far: its end is kept, nearest the replies
MAX_RESPONSE_CHARS = 500
MAX_QUESTION_CHARS = 1500
MAX_DESCRIPTION_CHARS = 600
MAX_CODE_CHARS = 1500  # longer solutions are dropped, never cut: a cut could hide the bug

Row = Mapping[str, Any]


def _load_dataset(repo: str, *args: Any, **kwargs: Any):
    """`datasets.load_dataset` at the repo's pinned commit."""
    pin = check_revision(repo, REVISIONS.get(repo))
    try:
        import datasets
    except ImportError:
        raise RuntimeError("the hub tasks need the 'datasets' library: "
                           "pip install 'aar-ray[gpu]'") from None
    return datasets.load_dataset(repo, *args, **pin, **kwargs)


# ---- text helpers ----------------------------------------------------------------------------

def _clean(text: str) -> str:
    """Unix newlines, no outer whitespace, and no accidental pair separator."""
    return text.replace("\r\n", "\n").replace(PAIR_SEP, "\nB : ").strip()


def _head(text: str, n: int) -> str:
    """At most about n characters from the start, cut between words."""
    if len(text) <= n:
        return text
    cut = text[:n]
    return (cut.rsplit(None, 1)[0] if " " in cut.strip() else cut).rstrip() + " …"


def _tail(text: str, n: int) -> str:
    """At most about n characters from the end, cut between words."""
    if len(text) <= n:
        return text
    cut = text[-n:]
    return "… " + (cut.split(None, 1)[-1] if " " in cut.strip() else cut).lstrip()


def _balanced_labels(n: int, rng: np.random.Generator) -> np.ndarray:
    """Exactly n // 2 of each class (n even), in random order."""
    return rng.permutation(np.arange(n - n % 2) % 2)


def _finish(texts: list[str], labels: list[int], classes: tuple[str, ...],
            rng: np.random.Generator) -> TaskData:
    """Drop repeated texts (first kept), then trim the majority class to exact balance."""
    first: dict[str, int] = {}
    for i, t in enumerate(texts):
        first.setdefault(t, i)
    keep = sorted(first.values())
    y = np.array([labels[i] for i in keep], dtype=np.int64)
    n = int(min((y == c).sum() for c in range(len(classes))))
    chosen = np.sort(np.concatenate([rng.permutation(np.flatnonzero(y == c))[:n]
                                     for c in range(len(classes))]))
    return TaskData([texts[keep[i]] for i in chosen], y[chosen], classes)


# ---- chat preference: which final assistant reply is better? ---------------------------------

LAST_REPLY = "\n\nAssistant:"


def _split_last_reply(dialogue: str) -> tuple[str, str] | None:
    context, sep, reply = dialogue.replace("\r\n", "\n").rpartition(LAST_REPLY)
    return (context, reply) if sep else None


def chat_pair_text(context: str, a: str, b: str) -> str:
    """The dialogue once, then the two replies as A and B. `split_pair` cuts it into
    (dialogue + A, B): the dialogue travels with side A in head-mode features; both orders are
    equally common, so the teacher cannot learn the label from that placement."""
    return (f"Dialogue:\n{context}\n\nWhich final assistant reply is better, A or B?\n\n"
            f"A: {a}{PAIR_SEP}{b}")


def chat_preference_from_rows(rows: Iterable[Row], seed: int = 0) -> TaskData:
    """hh-rlhf rows (`chosen`, `rejected`: whole dialogues) to pairs; label 1 = A is chosen.
    Rows whose dialogues differ before the last reply, or whose replies are equal, are skipped;
    a pair seen with both preferences is dropped."""
    best: dict[tuple[str, frozenset[str]], str | None] = {}
    for row in rows:
        good, bad = _split_last_reply(row["chosen"]), _split_last_reply(row["rejected"])
        if good is None or bad is None or good[0] != bad[0]:
            continue
        context = _tail(_clean(good[0]), MAX_CONTEXT_CHARS)
        a, b = (_head(_clean(r), MAX_RESPONSE_CHARS) for r in (good[1], bad[1]))
        if not context or not a or not b or a == b:
            continue
        key = (context, frozenset((a, b)))
        best[key] = a if best.get(key, a) == a else None  # None: contradictory duplicates
    items = sorted((ctx, a, next(iter(pair - {a})))
                   for (ctx, pair), a in best.items() if a is not None)
    rng = np.random.default_rng(seed)
    labels = _balanced_labels(len(items), rng)
    texts = [chat_pair_text(ctx, good, bad) if first else chat_pair_text(ctx, bad, good)
             for (ctx, good, bad), first in zip(items, labels, strict=False)]
    return _finish(texts, labels.tolist(), ("B", "A"), rng)


# ---- math verification: is the proposed final answer right? ---------------------------------

def final_answer(solution: str) -> int | None:
    """The integer after GSM8K's closing `#### `; None when absent or not an integer."""
    _, sep, tail = solution.rpartition("####")
    try:
        return int(tail.strip().replace(",", "")) if sep else None
    except ValueError:
        return None


def wrong_answers(n: int) -> list[int]:
    """Plausible slips: off by one or ten, a factor of ten, two adjacent digits swapped. Never n
    itself, and never negative for a non-negative n (a sign would give it away)."""
    out = {n + 1, n - 1, n + 10, n - 10, n * 10}
    if n % 10 == 0:
        out.add(n // 10)
    digits = str(abs(n))
    for i in range(len(digits) - 1):
        if digits[i] != digits[i + 1] and not (i == 0 and digits[1] == "0"):
            swapped = digits[:i] + digits[i + 1] + digits[i] + digits[i + 2:]
            out.add(int(swapped) * (-1 if n < 0 else 1))
            break
    return sorted(x for x in out if x != n and (x >= 0 or n < 0))


def math_text(question: str, answer: int) -> str:
    return f"Question: {question}\n\nProposed answer: {answer}\n\nIs the proposed answer correct?"


def math_verification_from_rows(rows: Iterable[Row], seed: int = 0) -> TaskData:
    """GSM8K rows (`question`, `answer` ending in `#### N`): one item per question, half with N,
    half with a wrong answer; label 1 = correct. A question seen with two answers is dropped."""
    answers: dict[str, int | None] = {}
    for row in rows:
        question = _head(_clean(row["question"]), MAX_QUESTION_CHARS)
        n = final_answer(row["answer"])
        if question and n is not None:
            answers[question] = n if answers.get(question, n) == n else None
    items = sorted((q, n) for q, n in answers.items() if n is not None)
    rng = np.random.default_rng(seed)
    labels = _balanced_labels(len(items), rng)
    texts = [math_text(q, n if ok else int(rng.choice(wrong_answers(n))))
             for (q, n), ok in zip(items, labels, strict=False)]
    return _finish(texts, labels.tolist(), ("incorrect", "correct"), rng)


# ---- code review: is the proposed solution right? --------------------------------------------

FLIPPED = {"<": ">=", ">": "<=", "<=": ">", ">=": "<", "==": "!=", "!=": "=="}
SWAPPED = {"+": "-", "-": "+", "+=": "-=", "-=": "+=", "and": "or", "or": "and"}
OPENING, CLOSING = {"(", "[", "{"}, {")", "]", "}"}
Edit = tuple[int, int, str]  # replace code[start:end] with the text


def _tokens(code: str) -> tuple[list[tokenize.TokenInfo], list[int]]:
    toks = list(tokenize.generate_tokens(io.StringIO(code).readline))
    starts = [0]
    for line in code.splitlines(keepends=True):
        starts.append(starts[-1] + len(line))
    return toks, starts


def _compare_edits(toks, at) -> list[Edit]:
    return [(at(t.start), at(t.end), FLIPPED[t.string]) for t in toks
            if t.type == tokenize.OP and t.string in FLIPPED]


def _operator_edits(toks, at) -> list[Edit]:
    return [(at(t.start), at(t.end), SWAPPED[t.string]) for t in toks
            if t.type in (tokenize.OP, tokenize.NAME) and t.string in SWAPPED]


def _range_edits(toks, at) -> list[Edit]:
    """Off by one in a `range(...)`'s stop argument (its only or second argument)."""
    edits = []
    for i, t in enumerate(toks[:-2]):
        if not (t.type == tokenize.NAME and t.string == "range" and toks[i + 1].string == "("
                and toks[i + 2].string != ")"):
            continue
        depth, commas, stop_end = 0, 0, None
        for j in range(i + 1, len(toks)):
            op = toks[j].string if toks[j].type == tokenize.OP else ""
            depth += op in OPENING
            depth -= op in CLOSING
            if depth == 0 or (depth == 1 and op == "," and commas == 1):
                stop_end = toks[j - 1].end  # the last token of the stop argument
                break
            commas += depth == 1 and op == ","
        if stop_end is not None:
            # follow the call's own spacing: `range(0,n+1)` but `range(0, n + 1)`
            spaced = " " if any(a.end[0] == b.start[0] and a.end[1] < b.start[1]
                                for a, b in itertools.pairwise(toks[i + 2:j])) else ""
            edits += [(at(stop_end), at(stop_end), f"{spaced}{sign}{spaced}1") for sign in "+-"]
    return edits


def _variables(toks) -> set[str]:
    """Names the code assigns at the start of a statement, and function parameters."""
    names, in_params, depth = set(), False, 0
    starts = (tokenize.NEWLINE, tokenize.NL, tokenize.INDENT, tokenize.DEDENT)
    for prev, t, nxt in zip([None, *toks[:-1]], toks, [*toks[1:], None], strict=True):
        if t.type != tokenize.NAME or nxt is None:
            if in_params and t.type == tokenize.OP:
                depth += (t.string in OPENING) - (t.string in CLOSING)
                in_params = depth > 0
            continue
        if prev is not None and prev.string == "def":
            in_params, depth = True, 0
        elif in_params and depth == 1 and prev.string in ("(", ",", "*", "**"):
            names.add(t.string)
        elif (prev is None or prev.type in starts) and nxt.string in ("=", "+=", "-=", "*="):
            names.add(t.string)
    return names


def _return_edits(toks, at) -> list[Edit]:
    """`return x` -> `return y` for another variable of the code."""
    variables = _variables(toks)
    edits = []
    for t, name, end in zip(toks, toks[1:], toks[2:], strict=False):
        if (t.string == "return" and name.type == tokenize.NAME and name.string in variables
                and end.type in (tokenize.NEWLINE, tokenize.COMMENT, tokenize.ENDMARKER)):
            edits += [(at(name.start), at(name.end), other)
                      for other in sorted(variables - {name.string})]
    return edits


MUTATIONS: dict[str, Callable[..., list[Edit]]] = {
    "off_by_one_range": _range_edits,
    "flipped_comparison": _compare_edits,
    "wrong_return_variable": _return_edits,
    "swapped_operator": _operator_edits,
}


def code_mutants(code: str) -> dict[str, list[str]]:
    """Every single-edit bug of each kind that parses and changes the program's syntax tree."""
    try:
        tree = ast.dump(ast.parse(code))
        toks, starts = _tokens(code)
    except (SyntaxError, tokenize.TokenError, IndentationError, ValueError):
        return {}

    def at(pos: tuple[int, int]) -> int:
        return starts[pos[0] - 1] + pos[1]

    out: dict[str, list[str]] = {}
    for kind, find in MUTATIONS.items():
        for start, end, text in find(toks, at):
            mutant = code[:start] + text + code[end:]
            try:
                changed = ast.dump(ast.parse(mutant)) != tree
            except SyntaxError:
                continue
            if changed:
                out.setdefault(kind, []).append(mutant)
    return out


def code_text(description: str, code: str) -> str:
    return (f"Task: {description}\n\nProposed solution:\n```python\n{code}\n```\n\n"
            "Is this solution correct?")


def code_review_from_rows(rows: Iterable[Row], seed: int = 0) -> TaskData:
    """MBPP rows (`text`, `code`): one item per problem, half with the reference solution and
    half with one injected bug (a kind, then a site, chosen at random); label 1 = correct.
    Solutions with no possible bug are dropped, so "nothing to mutate" is no cue."""
    items: dict[tuple[str, str], dict[str, list[str]]] = {}
    for row in rows:
        description = _head(_clean(row["text"]), MAX_DESCRIPTION_CHARS)
        code = _clean(row["code"])
        if description and 0 < len(code) <= MAX_CODE_CHARS and (description, code) not in items:
            mutants = code_mutants(code)
            if mutants:
                items[(description, code)] = mutants
    keys = sorted(items)
    rng = np.random.default_rng(seed)
    labels = _balanced_labels(len(keys), rng)
    texts = []
    for (description, code), ok in zip(keys, labels, strict=False):
        if not ok:
            mutants = items[(description, code)]
            kind = sorted(mutants)[rng.integers(len(mutants))]
            code = mutants[kind][rng.integers(len(mutants[kind]))]
        texts.append(code_text(description, code))
    return _finish(texts, labels.tolist(), ("buggy", "correct"), rng)


# ---- loaders and registration ----------------------------------------------------------------

@functools.cache
def load_chat_preference() -> TaskData:
    return chat_preference_from_rows(_load_dataset(HH_RLHF, split="train"))


@functools.cache
def load_math_verification() -> TaskData:
    return math_verification_from_rows(_load_dataset(*GSM8K, split="train"))


@functools.cache
def load_code_review() -> TaskData:
    # all four splits of "full" (974 problems): train alone (374) leaves too few for a test split
    splits = _load_dataset(*MBPP)
    return code_review_from_rows(row for name in sorted(splits) for row in splits[name])


def hub_cache_paths(repo: str) -> list[str]:
    """Where `datasets` keeps this repo's files (denied to agents' methods: the labels are in
    them). Only the data set's own folders: models in the hub cache must stay readable."""
    from huggingface_hub import constants

    xdg = os.environ.get("XDG_CACHE_HOME", "~/.cache")
    home = os.path.expanduser(os.environ.get("HF_HOME", os.path.join(xdg, "huggingface")))
    datasets_cache = os.environ.get("HF_DATASETS_CACHE", os.path.join(home, "datasets"))
    return [str(Path(datasets_cache)),
            str(Path(constants.HF_HUB_CACHE) / f"datasets--{repo.replace('/', '--')}")]


def _spec(name: str, description: str, load: Callable[[], TaskData], repo: str, size: int,
          test_size: int, pairwise: bool = False) -> TaskSpec:
    return TaskSpec(name=name, description=description, load=load, default_size=size,
                    default_test_size=test_size, protected_paths=lambda: hub_cache_paths(repo),
                    revision=REVISIONS[repo], pairwise=pairwise)


for _s in (
    _spec("chat_preference", "Which of two assistant replies to a dialogue did people prefer? "
          "(Anthropic hh-rlhf; the seed's task)", load_chat_preference, HH_RLHF, 20000, 2000,
          pairwise=True),
    _spec("math_verification", "Is the proposed final answer to this grade-school maths problem "
          "correct? (GSM8K; held-out transfer)", load_math_verification, GSM8K[0], 7000, 1000),
    _spec("code_review", "Is this Python solution correct, or does it hide a bug? (MBPP; "
          "held-out transfer)", load_code_review, MBPP[0], 1000, 300),
):
    TASKS.add(_s.name, _s)
