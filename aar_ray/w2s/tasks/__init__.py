"""Tasks: labelled text classification data sets, one module per task, registered in
`registry.TASKS` (which imports every module of this folder, then installed packages' entry
points in the group "aar_ray.tasks": see `aar_ray/registry.py`).

A task's raw data (package files, generators) is trusted-side only: the lab gives trial workers
texts and weak labels, never `TaskData.labels`.
"""
from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from aar_ray.errors import ConfigError
from aar_ray.registry import TASKS


@dataclass(frozen=True)
class TaskData:
    texts: list[str]
    labels: np.ndarray  # int class ids, shape (n,)
    classes: tuple[str, ...]

    def __post_init__(self) -> None:
        if len(self.texts) != len(self.labels):
            raise ValueError("texts and labels differ in length")

    def fingerprint(self) -> str:
        """Content hash of texts and labels: part of every cache key built on this data."""
        h = hashlib.sha256()
        for t, y in zip(self.texts, self.labels.tolist(), strict=True):
            h.update(t.encode())
            h.update(b"\x00%d\x01" % y)
        return h.hexdigest()[:16]


def generate(n: int, seed: int, draw: Callable[[np.random.Generator], tuple[str, int]],
             classes: tuple[str, ...]) -> TaskData:
    """A generated task: `draw(rng)` gives one (text, label); repeated texts are drawn again
    until `n` distinct ones are there. Deterministic in `seed`."""
    rng = np.random.default_rng(seed)
    seen: set[str] = set()
    texts, labels = [], []
    while len(texts) < n:
        text, label = draw(rng)
        if text in seen:
            continue
        seen.add(text)
        texts.append(text)
        labels.append(label)
    return TaskData(texts, np.array(labels), classes)


PAIR_SEP = "\nB: "  # no text of a task that is not pairwise may contain it (hub.clean)


def join_pair(a: str, b: str) -> str:
    """One text of a pairwise task: "A: <a>\\nB: <b>"."""
    return f"A: {a}{PAIR_SEP}{b}"


def split_pair(text: str) -> tuple[str, str]:
    """The two sides of a pairwise task's text (head-mode features are f(A) - f(B))."""
    a, b = text.split(PAIR_SEP, 1)
    return a.removeprefix("A: "), b


@dataclass(frozen=True)
class TaskSpec:
    name: str
    description: str
    load: Callable[[], TaskData]  # the full cleaned data set, deterministic
    default_size: int
    default_test_size: int
    # files that hold ground truth; the sandbox denies reading them to agents' methods
    protected_paths: Callable[[], list[str]] = field(default=lambda: [])
    # each text is a pair "A: <a>\nB: <b>" (`join_pair`); head-mode features are f(A) - f(B)
    pairwise: bool = False
    revision: str | None = None  # the hub commit a hub data set is pinned to


SPLITS_VERSION = 2  # part of every cache key: bump when make_splits changes


@dataclass(frozen=True)
class Splits:
    """Index arrays into TaskData: the teacher's labelled split, the unlabelled split the student
    learns from (weak labels only) and the seed's own test split."""

    labelled: np.ndarray
    unlabelled: np.ndarray
    test: np.ndarray


def subsample(data: TaskData, size: int) -> TaskData:
    """A class-balanced, deterministic subset of `size` examples (all of them if size >= n)."""
    if size <= 0 or size >= len(data.texts):
        return data
    rng = np.random.default_rng(12345)
    per_class = size // len(data.classes)
    keep = np.concatenate([
        rng.permutation(np.flatnonzero(data.labels == c))[:per_class]
        for c in range(len(data.classes))
    ])
    keep.sort()
    return TaskData([data.texts[i] for i in keep], data.labels[keep], data.classes)


def make_splits(n: int, test_size: int, seed: int) -> Splits:
    """Every seed draws its own test items, and splits the rest in halves (teacher's labelled,
    student's unlabelled). Re-drawing the test items per seed makes item noise average out
    over seeds, like training noise: a fixed test split scores every seed on the same items,
    and no number of seeds then shrinks that part of the error."""
    if not 0 < test_size < n - 4:
        raise ConfigError(f"setting.test_size: {test_size} does not fit a data set of {n} "
                          f"examples (give 1..{max(n - 5, 1)}, or 0 for the task's default)")
    order = np.random.default_rng([SPLITS_VERSION, seed]).permutation(n)
    test, rest = np.sort(order[:test_size]), order[test_size:]
    half = len(rest) // 2
    return Splits(np.sort(rest[:half]), np.sort(rest[half:]), test)


def load_task(name: str, max_examples: int = 0) -> TaskData:
    spec = TASKS.get(name)
    return subsample(spec.load(), max_examples or spec.default_size)
