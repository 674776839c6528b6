"""Statistical checks for aar_ray.results.stats: simulated calibration, exact edge cases."""

from __future__ import annotations

import time
import warnings

import numpy as np
import pytest

from aar_ray.results.stats import (
    Comparison,
    Estimate,
    _sign_test_p,
    holm,
    paired_compare,
    pgr_ci,
    pgr_from_correct,
)

TRUE_PGR = 0.4


def _draw(rng: np.random.Generator, z: np.ndarray, acc: np.ndarray, rho: float) -> np.ndarray:
    """(S, N) correctness with P(correct) = acc[s].  With prob rho an item uses its shared
    difficulty z[i] (same items hard for every seed/model), else fresh noise."""
    s, n = acc.size, z.size
    latent = np.where(rng.random((s, n)) < rho, z, rng.random((s, n)))
    return latent < acc[:, None]


def _world(
    rng: np.random.Generator,
    *,
    s: int = 5,
    n: int = 500,
    rho: float = 0.8,
    seed_sd: float = 0.01,
    method_delta: float | None = None,
) -> list[np.ndarray]:
    """transfer, weak, ceiling (and a method at transfer + method_delta) with seed effects.

    Expected accuracies: weak 0.75, ceiling 0.86, transfer weak + 0.4 gap, so the ratio of
    expected gains -- the estimand -- is exactly TRUE_PGR.
    """
    z = rng.random(n)
    weak = 0.75 + rng.normal(0, seed_sd, s)
    ceil = 0.86 + rng.normal(0, seed_sd, s)
    mid = weak + TRUE_PGR * (ceil - weak)
    out = [
        _draw(rng, z, mid + rng.normal(0, seed_sd, s), rho),
        _draw(rng, z, weak, rho),
        _draw(rng, z, ceil, rho),
    ]
    if method_delta is not None:
        out.append(_draw(rng, z, mid + method_delta + rng.normal(0, seed_sd, s), rho))
    return out


def test_pgr_from_correct_per_seed_and_zero_gap_is_nan() -> None:
    weak = np.array([[1, 1, 0, 0], [1, 1, 0, 0]], bool)
    ceiling = np.array([[1, 1, 1, 1], [1, 1, 0, 0]], bool)  # seed 1: gap 0
    transfer = np.array([[1, 1, 1, 0], [1, 1, 1, 0]], bool)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = pgr_from_correct(transfer, weak, ceiling)
    assert out[0] == pytest.approx(0.5)
    assert np.isnan(out[1])


def test_point_estimate_is_ratio_of_mean_gains() -> None:
    rng = np.random.default_rng(0)
    t, w, c = _world(rng, s=4, n=300)
    est = pgr_ci(t, w, c, n_boot=200, rng=rng)
    expected = (t.mean() - w.mean()) / (c.mean() - w.mean())
    assert est.mean == pytest.approx(expected)
    assert est.lo <= est.mean <= est.hi and est.se > 0 and est.n_seeds == 4
    assert Estimate(**est.to_dict()) == est


def test_pgr_ci_is_deterministic_given_rng() -> None:
    t, w, c = _world(np.random.default_rng(1))
    a = pgr_ci(t, w, c, n_boot=300, rng=np.random.default_rng(7))
    b = pgr_ci(t, w, c, n_boot=300, rng=np.random.default_rng(7))
    assert a == b


@pytest.mark.parametrize(
    ("rho", "seed_sd"),
    [(0.8, 0.01), (1.0, 0.015)],  # mixed item/seed noise; items shared, seed-dominated
)
def test_pgr_ci_coverage(rho: float, seed_sd: float) -> None:
    rng = np.random.default_rng(2024)
    reps = 200
    ests = [
        pgr_ci(*_world(rng, rho=rho, seed_sd=seed_sd), n_boot=400, rng=rng) for _ in range(reps)
    ]
    coverage = np.mean([e.lo <= TRUE_PGR <= e.hi for e in ests])
    width = np.mean([e.hi - e.lo for e in ests])
    assert coverage >= 0.90, coverage
    assert width < 0.5, width  # not covering by being uninformative


def test_pgr_ci_runtime() -> None:
    rng = np.random.default_rng(3)
    t, w, c = _world(rng, n=2000)
    pgr_ci(t, w, c, n_boot=50, rng=rng)  # warm-up
    start = time.perf_counter()
    pgr_ci(t, w, c, n_boot=2000, rng=rng)
    assert time.perf_counter() - start < 1.0


def test_no_positive_gap_gives_nan_without_crash() -> None:
    rng = np.random.default_rng(4)
    t, w, _ = _world(rng, s=3, n=200)
    ceiling = w.copy()  # gap exactly 0 in every seed
    ceiling[:, :5] = False  # and now strictly below weak where weak was right
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        per_seed = pgr_from_correct(t, w, ceiling)
        est = pgr_ci(t, w, ceiling, n_boot=100, rng=rng)
        cmp = paired_compare(t, t, w, ceiling, n_boot=100, rng=rng)
    assert np.isnan(per_seed).all()
    assert all(np.isnan([est.mean, est.lo, est.hi, est.se])) and est.n_seeds == 3
    assert np.isnan(cmp.delta_pgr) and cmp.p_value == 1.0


def test_gap_indistinguishable_from_zero_gives_unbounded_ci() -> None:
    rng = np.random.default_rng(5)
    w = rng.random((3, 400)) < 0.7
    c = w.copy()
    c[0, np.flatnonzero(~w[0])[:2]] = True  # pooled gap: 2 items out of 1200
    t = w.copy()
    est = pgr_ci(t, w, c, n_boot=400, rng=rng)
    assert np.isfinite(est.mean) and est.lo == -np.inf and est.hi == np.inf


def test_input_validation() -> None:
    a = np.ones((2, 5), bool)
    with pytest.raises(ValueError):
        pgr_ci(a, a, np.ones((2, 4), bool), rng=np.random.default_rng(0))
    with pytest.raises(ValueError):
        pgr_from_correct(a * 2, a, a)


def test_paired_known_difference_is_detected() -> None:
    rng = np.random.default_rng(6)
    t, w, c, m = _world(rng, method_delta=0.04)  # method truly +4 points over baseline
    cmp = paired_compare(m, t, w, c, n_boot=1000, rng=rng)
    assert cmp.p_value < 0.05
    assert 0 < cmp.lo <= cmp.delta_pgr <= cmp.hi
    assert cmp.lo < 0.04 / 0.11 < cmp.hi  # true ΔPGR inside the CI
    assert cmp.effect_size > 0
    assert Comparison(**cmp.to_dict()) == cmp


def _null_pair(rng: np.random.Generator) -> tuple[np.ndarray, ...]:
    """Method and baseline from the same distribution (independent seed effects)."""
    t, w, c, m = _world(rng, method_delta=0.0)
    return m, t, w, c


def test_paired_power_and_false_positive_rate() -> None:
    rng = np.random.default_rng(7)
    reps = 100
    null = [paired_compare(*_null_pair(rng), n_boot=200, rng=rng) for _ in range(reps)]
    fpr = np.mean([r.p_value < 0.05 for r in null])
    ci_has_zero = np.mean([r.lo <= 0 <= r.hi for r in null])
    assert fpr <= 0.10, fpr
    assert ci_has_zero >= 0.88, ci_has_zero
    hits = 0
    for _ in range(40):
        t, w, c, m = _world(rng, rho=0.95, seed_sd=0.005, method_delta=0.04)
        r = paired_compare(m, t, w, c, n_boot=200, rng=rng)
        hits += r.p_value < 0.05 and r.lo > 0
    assert hits / 40 >= 0.9


def test_identical_method_and_baseline() -> None:
    rng = np.random.default_rng(8)
    t, w, c = _world(rng)
    cmp = paired_compare(t, t, w, c, n_boot=100, rng=rng)
    assert cmp.delta_pgr == 0.0 and cmp.p_value == 1.0 and cmp.effect_size == 0.0
    assert cmp.lo == cmp.hi == 0.0


def test_sign_test_exact_values() -> None:
    assert _sign_test_p(9, 1) == pytest.approx(2 * 11 / 1024)  # 2 * P(X <= 1), X ~ Bin(10, .5)
    assert _sign_test_p(0, 0) == 1.0 and _sign_test_p(3, 3) == 1.0
    assert _sign_test_p(2000, 1500) < 1e-15


def test_holm_hand_computed() -> None:
    # sorted: .005*4=.02, .01*3=.03, .03*2=.06, .04*1=.04 -> running max .02 .03 .06 .06
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm([0.5, 0.6]) == [1.0, 1.0]  # capped at 1
    assert holm([]) == []
    out = holm([0.01, float("nan")])
    assert out[0] == pytest.approx(0.02) and np.isnan(out[1])
