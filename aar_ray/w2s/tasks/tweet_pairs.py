"""Pairwise preference on real tweets: "which of A and B is the positive one?" — the framing of
the seed's chat-preference task. Each tweet is used in at most one pair; order is randomised."""
from __future__ import annotations

import functools

import numpy as np

from aar_ray.w2s.tasks import TASKS, TaskData, TaskSpec, join_pair, tweets


@functools.cache
def load() -> TaskData:
    base = tweets.load()
    rng = np.random.default_rng(7)
    pos = rng.permutation(np.flatnonzero(base.labels == 1))
    neg = rng.permutation(np.flatnonzero(base.labels == 0))
    texts, labels = [], []
    for p, q in zip(pos, neg, strict=False):
        first_is_positive = bool(rng.integers(2))
        a, b = (p, q) if first_is_positive else (q, p)
        texts.append(join_pair(base.texts[a], base.texts[b]))
        labels.append(int(first_is_positive))
    return TaskData(texts, np.array(labels), ("B", "A"))


TASKS.add("tweet_pairs", TaskSpec(
    name="tweet_pairs",
    description="Which of two tweets is the positive one? (preference framing)",
    load=load,
    default_size=6000,
    default_test_size=2000,
    protected_paths=lambda: [str(tweets.corpus_path())],
    pairwise=True,
))
