"""Uncertainty for the final (private) leaderboard: a CI on every entry's PGR and a paired,
Holm-corrected comparison of every entry with the lab's vanilla baseline.

`annotate` is pure (correctness arrays in, numbers out) so it is tested on synthetic data;
`correctness` and `annotate_leaderboard` build those arrays from a `Scorer`'s stored
predictions and its ground truth, and so run only inside the scorer (the trusted side).

Correctness is passed per seed, `{seed: (n_items,) bool}`, because trials may use different
subsets of the campaign's seeds: an entry is compared with the baseline on the seeds both
have, and weak/ceiling rows are taken for exactly those seeds, so every comparison is paired.
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from aar_ray.results import stats

if TYPE_CHECKING:
    from aar_ray.lab.scorer import Scorer

Correct = Mapping[int, np.ndarray]  # seed -> (n_items,) bool: was the argmax right?

FIELDS = ("pgr_pooled", "ci_lo", "ci_hi", "delta_vs_baseline", "delta_lo", "delta_hi",
          "p_vs_baseline", "effect_size", "p_holm", "significant", "compared_seeds")


def _num(x: float) -> float | None:
    """JSON-safe float: None where undefined (no pooled gap) or unbounded (gap ~ 0)."""
    return float(x) if x is not None and math.isfinite(x) else None


def _stack(correct: Correct, seeds: list[int]) -> np.ndarray:
    return np.stack([np.asarray(correct[s], dtype=bool) for s in seeds])


def annotate(entries: list[dict[str, Any]], correct_by_trial: Mapping[str, Correct],
             weak_correct: Correct, ceiling_correct: Correct, baseline_trial_id: str | None,
             rng: np.random.Generator, *, alpha: float = 0.05) -> list[dict[str, Any]]:
    """Add to each entry (in place, and returned):

    * `pgr_pooled`, `ci_lo`, `ci_hi`: ratio-of-mean-gains PGR and its 95% seeds x items CI
      (`stats.pgr_ci`, which also resamples the weak and ceiling accuracies). The CI is
      centred on `pgr_pooled`, not on the board's `pgr` (a mean of per-seed PGRs).
    * `delta_vs_baseline` (ΔPGR), `delta_lo`, `delta_hi`, `p_vs_baseline`, `effect_size`
      (`stats.paired_compare` against `baseline_trial_id` on `compared_seeds`, the seeds both
      trials ran), `p_holm` (Holm over every non-baseline entry in `entries`, so call this on
      the whole board before cutting it to a limit) and `significant` (p_holm < alpha).

    The baseline's own entry and entries without common seeds get None for the comparison
    fields (a missing test still counts in Holm's m: conservative). Every float is None where
    it is undefined or unbounded, so the result stays valid JSON.
    """
    base = correct_by_trial.get(baseline_trial_id) if baseline_trial_id else None
    tested: list[tuple[dict[str, Any], float]] = []
    for e in entries:
        tid = e["trial_id"]
        own = correct_by_trial[tid]
        seeds = sorted(s for s in own if s in weak_correct and s in ceiling_correct)
        e.update(dict.fromkeys(FIELDS), significant=False, compared_seeds=[])
        if seeds:
            t, w, c = (_stack(x, seeds) for x in (own, weak_correct, ceiling_correct))
            est = stats.pgr_ci(t, w, c, rng=rng, alpha=alpha)
            e.update(pgr_pooled=_num(est.mean), ci_lo=_num(est.lo), ci_hi=_num(est.hi))
        if base is None or tid == baseline_trial_id:
            continue
        common = [s for s in seeds if s in base]
        p = math.nan
        if common:
            cmp = stats.paired_compare(_stack(own, common), _stack(base, common),
                                       _stack(weak_correct, common),
                                       _stack(ceiling_correct, common), rng=rng, alpha=alpha)
            p = cmp.p_value
            e.update(delta_vs_baseline=_num(cmp.delta_pgr), delta_lo=_num(cmp.lo),
                     delta_hi=_num(cmp.hi), p_vs_baseline=_num(cmp.p_value),
                     effect_size=_num(cmp.effect_size), compared_seeds=common)
        tested.append((e, p))
    for (e, _), adj in zip(tested, stats.holm([p for _, p in tested]), strict=True):
        e["p_holm"] = _num(adj)
        e["significant"] = bool(e["p_holm"] is not None and e["p_holm"] < alpha)
    return entries


# ---- from a Scorer (trusted side) ---------------------------------------------------------------

def correctness(scorer: Scorer, trial_id: str, part: str = "private") -> dict[int, np.ndarray]:
    """{seed: (n_items,) bool} for a recorded trial on `part` ('public' or 'private') of the
    test split, from the scorer's stored predictions and its labels."""
    preds = scorer.predictions(trial_id)
    if preds is None:
        raise KeyError(f"no recorded trial {trial_id!r}")
    items = scorer.items[part]
    return {seed: p[items].argmax(1) == scorer._seed_truth(seed)["labels"][items]
            for seed, p in preds.items()}


def reference_correctness(scorer: Scorer, part: str = "private",
                          seeds: list[int] | None = None) -> tuple[dict[int, np.ndarray],
                                                                   dict[int, np.ndarray]]:
    """The teacher's and the ceiling's {seed: (n_items,) bool} on `part`."""
    items = scorer.items[part]
    weak, ceil = {}, {}
    for seed in seeds or scorer.cfg.seeds:
        t = scorer._seed_truth(seed)
        weak[seed] = t["weak"][items].argmax(1) == t["labels"][items]
        ceil[seed] = t["ceiling"][items].argmax(1) == t["labels"][items]
    return weak, ceil


def baseline_trial(scorer: Scorer) -> str | None:
    """The lab's own vanilla trial (agent 'baseline'), the first one submitted."""
    row = scorer.store.one("SELECT trial_id FROM submissions WHERE agent='baseline' "
                           "ORDER BY submitted_at LIMIT 1")
    return row["trial_id"] if row else None


def annotate_leaderboard(scorer: Scorer, entries: list[dict[str, Any]],
                         part: str = "private", seed: int = 0) -> list[dict[str, Any]]:
    """`annotate` with everything taken from `scorer`; the rng is seeded, so the board's CIs
    are the same every time it is read."""
    base = baseline_trial(scorer)
    ids = {e["trial_id"] for e in entries} | ({base} if base else set())
    correct = {tid: correctness(scorer, tid, part) for tid in ids}
    weak, ceil = reference_correctness(scorer, part)
    return annotate(entries, correct, weak, ceil, base, np.random.default_rng(seed))
