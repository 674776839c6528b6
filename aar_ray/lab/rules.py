"""What the scorer tells an agent about a submission: pure functions of numbers, so that the
rules are tested (and mutation-tested) without ground truth, SQLite or Ray. `Scorer` calls them.

* `ladder`: a new public ΔPGR is revealed, rounded, only when it beats the agent's best shown by
  a margin (the Ladder, Blum & Hardt 2015): adaptive resubmissions then learn about one bit per
  improvement step, not the score of every probe.
* `shown_scores`: the CI and PGR that go with a revealed ΔPGR, rounded alike; nothing when the
  Ladder withheld it (they would leak what it hid).
* `replicated`: the one bit on whether a configuration holds up on other seeds.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any


def ladder(delta: float | None, best: float | None, margin: float,
           decimals: int) -> tuple[float | None, str]:
    """(ΔPGR to show or None, message) for a submission whose public ΔPGR is `delta` from an
    agent whose best shown so far is `best` (None: nothing shown yet)."""
    if delta is None:
        return None, "ΔPGR undefined (no vanilla run on these seeds, or no teacher-ceiling gap)"
    if best is None or delta >= best + margin:
        return round(delta, decimals), "new best"
    return None, f"not better than your best ΔPGR ({best}) by the margin {margin}"


def shown_scores(shown: float | None, public: dict[str, Any], decimals: int) -> dict[str, Any]:
    """The public numbers of a submission an agent sees: `shown` (the Ladder's ΔPGR) and, only
    with it, its 95% CI and the public PGR, rounded to `decimals`. `public` is the scorer's
    public-split score (`vs_vanilla` None when no vanilla run shares a seed)."""
    vs = public["vs_vanilla"] or {}
    revealed = shown is not None
    return {"public_delta": shown,
            "public_delta_ci": [round(vs["lo"], decimals), round(vs["hi"], decimals)]
            if revealed and vs.get("lo") is not None else None,
            "public_pgr": round(public["pgr"], decimals)
            if revealed and public["pgr"] is not None else None}


def replicated(n_seeds: int, n_runs: int,
               pooled: Callable[[], dict[str, Any] | None]) -> bool | None:
    """Whether a configuration replicated: None until it was submitted at least twice on two or
    more seeds in all (one run proves nothing yet); then whether the 95% CI of its public ΔPGR
    over vanilla, pooled over all its seeds (`pooled()`, computed only then), lies above 0."""
    if n_seeds < 2 or n_runs < 2:
        return None
    cmp = pooled()
    return bool(cmp and cmp["lo"] is not None and cmp["lo"] > 0)
