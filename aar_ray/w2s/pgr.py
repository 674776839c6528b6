"""Performance gap recovered: the per-seed ratio and the pooled estimator every table uses."""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
from scipy import stats as scipy_stats

MIN_GAP = 1e-6
_NAN = float("nan")
Arrays = Sequence[np.ndarray]  # one 0/1 array per seed (or a (seeds, items) array)


def finite(x: float | None) -> float | None:
    """`x` as a JSON-safe float: None where it is missing, undefined (NaN) or unbounded."""
    return float(x) if x is not None and math.isfinite(x) else None


def accuracy(probs: np.ndarray, labels: np.ndarray) -> float:
    return float((np.asarray(probs).argmax(axis=1) == np.asarray(labels)).mean())


def pgr(transfer: float, weak: float, ceiling: float) -> float | None:
    """(transfer - weak) / (ceiling - weak); None when the ceiling does not beat the teacher,
    where PGR is undefined (a setting with no gap says nothing about methods)."""
    gap = ceiling - weak
    if not math.isfinite(gap) or gap <= MIN_GAP:
        return None
    return (transfer - weak) / gap


def pooled(transfer: Sequence[float], weak: Sequence[float],
           ceiling: Sequence[float]) -> float | None:
    """THE PGR estimator over seeds: the ratio of mean gains, sum(t - w) / sum(c - w).

    A mean of per-seed ratios lets one seed with a tiny gap dominate; this weighs seeds by
    their gap. None when the pooled gap is not positive. Leaderboard order, CIs (results.stats),
    feedback, audit and report all use this function."""
    t, w, c = (np.asarray(x, dtype=float) for x in (transfer, weak, ceiling))
    return pgr(float(t.sum()), float(w.sum()), float(c.sum())) if len(t) else None


def mean_se(values: Sequence[float | None]) -> tuple[float | None, float | None]:
    """Mean and standard error over seeds of a per-seed quantity (accuracies), skipping
    undefined values. Not for PGR: use `pooled` (and results.stats for its CI)."""
    xs = np.array([v for v in values if v is not None], dtype=float)
    if len(xs) == 0:
        return None, None
    se = float(xs.std(ddof=1) / math.sqrt(len(xs))) if len(xs) > 1 else None
    return float(xs.mean()), se


@dataclass(frozen=True)
class Estimate:
    """Pooled PGR, its CI [lo, hi], the seed x item se and its df, the number of seeds."""

    mean: float
    lo: float
    hi: float
    se: float
    n_seeds: int
    df: float = _NAN

    def to_dict(self) -> dict[str, float | int]:
        return asdict(self)


def per_seed_arrays(*arrays: Arrays) -> list[list[np.ndarray]]:
    """Validate: the same number of seeds, per seed equal-length 0/1 arrays of >= 2 items."""
    n = len(arrays[0])
    if n < 1:
        raise ValueError("need at least one seed")
    out = []
    for a in arrays:
        if len(a) != n:
            raise ValueError(f"every input needs {n} seeds, got {len(a)}")
        out.append([np.asarray(row, dtype=np.float64) for row in a])
    for s in range(n):
        shape = out[0][s].shape
        if len(shape) != 1 or shape[0] < 2:
            raise ValueError(f"seed {s}: expected a 1-D array of >= 2 items, got {shape}")
        for a in out:
            if a[s].shape != shape or not np.isin(a[s], (0.0, 1.0)).all():
                raise ValueError(f"seed {s}: need 0/1 arrays of one length {shape[0]}")
    return out


def ratio_se(num: list[np.ndarray], den: list[np.ndarray], ratio: float) -> tuple[float, float]:
    """(se, df) of sum_s mean(num_s) / sum_s mean(den_s) at `ratio`, by the delta method over
    seeds, floored by the item-only se (module docstring)."""
    scale = float(np.mean([d.mean() for d in den]))
    v = [(a - ratio * d) / scale for a, d in zip(num, den, strict=True)]
    s = len(v)
    se_items = math.sqrt(sum(x.var(ddof=1) / x.size for x in v)) / s
    df_items = float(sum(x.size for x in v) - s)
    if s == 1:
        return se_items, df_items
    se_seeds = float(np.std([x.mean() for x in v], ddof=1)) / math.sqrt(s)
    return (se_seeds, s - 1.0) if se_seeds >= se_items else (se_items, df_items)


def t_crit(alpha: float, df: float) -> float:
    """t with P(|T_df| >= t) = alpha."""
    return float(scipy_stats.t.ppf(1.0 - alpha / 2.0, df))


def pgr_ci(transfer: Arrays, weak: Arrays, ceiling: Arrays, *, alpha: float = 0.05) -> Estimate:
    """Pooled PGR with its seed x item se and a t interval; all-nan if the pooled gap <= 0."""
    t, w, c = per_seed_arrays(transfer, weak, ceiling)
    est = pooled([x.mean() for x in t], [x.mean() for x in w], [x.mean() for x in c])
    if est is None:
        return Estimate(_NAN, _NAN, _NAN, _NAN, len(t))
    se, df = ratio_se([a - b for a, b in zip(t, w, strict=True)],
                       [a - b for a, b in zip(c, w, strict=True)], est)
    half = t_crit(alpha, df) * se
    return Estimate(est, est - half, est + half, se, len(t), df)


