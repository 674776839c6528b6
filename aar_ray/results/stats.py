"""Uncertainty for weak-to-strong results: PGR with CIs, paired comparisons, Holm, power.

Inputs are per-seed 0/1 correctness arrays: `transfer[s]` holds seed s's answers on seed s's
own test items. Every seed draws its test items afresh (`w2s.tasks.make_splits`), so item
noise averages out over seeds and the seeds are independent replicates of the whole
experiment (training *and* test draw). A 2-D (seeds, items) array works too: its rows.

Estimator (the one used everywhere: leaderboard order, CIs, feedback, audit, report):
`w2s.pgr.pooled`, the ratio of mean gains over seeds,
    PGR = sum_s(transfer_acc_s - weak_acc_s) / sum_s(ceiling_acc_s - weak_acc_s).
A mean of per-seed ratios lets one seed with a tiny gap dominate; the ratio of means weighs
seeds by their gap and is undefined only if the pooled gap is <= 0.

Standard error: the delta method over seeds (u_s, the linearised ratio of seed s), so it
holds seed (training) variance and item (test draw) variance together: the seed x item SE.
With few seeds the sample SD over seeds can be small by chance, so the SE is never taken
below the item-only SE that the binomial noise within each seed alone implies (when that
floor binds, the test uses its large df). CIs and tests use Student's t on the seeds' df.

Holm and the MDE stay hand-written (a dozen lines on scipy's t): statsmodels' `multipletests`
and `TTestPower` would add it as a dependency for two formulas that docs/statistics.md states.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
from scipy import stats as scipy_stats

from aar_ray.w2s.pgr import Arrays, Estimate, per_seed_arrays, pgr_ci, ratio_se, t_crit

__all__ = ["Estimate", "Comparison", "pgr_ci", "paired_compare", "holm",
           "min_detectable_delta", "spearman"]

_NAN = float("nan")


@dataclass(frozen=True)
class Comparison:
    """Method minus baseline on the same seeds and items: ΔPGR with CI and se, the two-sided
    p-value of Δacc = 0, and Cohen's d_z of the per-seed accuracy differences."""

    delta_pgr: float
    lo: float
    hi: float
    p_value: float
    effect_size: float
    se: float = _NAN
    df: float = _NAN

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


def paired_compare(method: Arrays, baseline: Arrays, weak: Arrays, ceiling: Arrays, *,
                   alpha: float = 0.05) -> Comparison:
    """Method vs baseline on the same seeds and items.

    ΔPGR = sum_s(method_acc_s - baseline_acc_s) / sum_s(gap_s): with weak and ceiling shared,
    the difference of the two pooled PGRs. Its CI is a t interval on the delta-method se. The
    test is of Δacc = 0 (the same null when the gap is > 0, without a noisy denominator):
    t = mean_s(Δacc_s) / se with the same seed x item se and df.
    """
    m, b, w, c = per_seed_arrays(method, baseline, weak, ceiling)
    d = [x - y for x, y in zip(m, b, strict=True)]
    gap = [x - y for x, y in zip(c, w, strict=True)]
    mu = float(np.mean([x.mean() for x in d]))
    se_d, df_d = ratio_se(d, [np.ones_like(x) for x in d], mu)
    if mu == 0:
        p = 1.0
    elif se_d == 0:
        p = 0.0
    else:
        p = float(2.0 * scipy_stats.t.sf(abs(mu) / se_d, df_d))
    per_seed = [x.mean() for x in d]
    sd = float(np.std(per_seed, ddof=1)) if len(d) > 1 else _NAN
    effect = mu / sd if sd > 0 or math.isnan(sd) else math.copysign(math.inf, mu) if mu else 0.0
    total_gap = sum(x.mean() for x in gap)
    if total_gap <= 0:
        return Comparison(_NAN, _NAN, _NAN, p, effect)
    delta = float(sum(per_seed) / total_gap)
    se, df = ratio_se(d, gap, delta)
    half = t_crit(alpha, df) * se
    return Comparison(delta, delta - half, delta + half, p, effect, se, df)


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values (step-down, monotone, capped at 1, input order kept).

    Controls family-wise error over the family under any dependence between the tests. NaN
    inputs count towards m (conservative), rank last and stay NaN.
    """
    p = np.asarray(p_values, dtype=float)
    m = p.size
    if m == 0:
        return []
    nan = np.isnan(p)
    filled = np.where(nan, 1.0, p)
    order = np.argsort(filled, kind="stable")
    adj = np.empty(m)
    adj[order] = np.minimum(1.0, np.maximum.accumulate((m - np.arange(m)) * filled[order]))
    adj[nan] = np.nan
    return adj.tolist()


def min_detectable_delta(se: float, df: float, k: int = 1, *, alpha: float = 0.05,
                         power: float = 0.8) -> float:
    """The smallest true Δ that a two-sided t test at Holm's strictest level alpha / k detects
    with probability `power`, given the test's se and df (normal approximation of the
    non-central t, standard in power calculations)."""
    if not (se > 0 and df > 0 and k >= 1):
        return _NAN
    return (t_crit(alpha / k, df) + float(scipy_stats.t.ppf(power, df))) * se


def spearman(x: Sequence[float], y: Sequence[float]) -> float | None:
    """Spearman's rank correlation; None with fewer than 3 pairs or a constant side."""
    if len(x) < 3 or len(set(x)) < 2 or len(set(y)) < 2:
        return None
    return float(scipy_stats.spearmanr(x, y).statistic)
