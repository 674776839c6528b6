"""Performance gap recovered, and the small summaries every table uses."""
from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

MIN_GAP = 1e-6


def accuracy(probs: np.ndarray, labels: np.ndarray) -> float:
    return float((np.asarray(probs).argmax(axis=1) == np.asarray(labels)).mean())


def pgr(transfer: float, weak: float, ceiling: float) -> float | None:
    """(transfer - weak) / (ceiling - weak); None when the ceiling does not beat the teacher,
    where PGR is undefined (a setting with no gap says nothing about methods)."""
    gap = ceiling - weak
    if not math.isfinite(gap) or gap <= MIN_GAP:
        return None
    return (transfer - weak) / gap


def mean_se(values: Sequence[float | None]) -> tuple[float | None, float | None]:
    """Mean and standard error over seeds, skipping undefined values."""
    xs = np.array([v for v in values if v is not None], dtype=float)
    if len(xs) == 0:
        return None, None
    se = float(xs.std(ddof=1) / math.sqrt(len(xs))) if len(xs) > 1 else None
    return float(xs.mean()), se
