"""The winner rule: a confirmed configuration wins only with evidence that it transfers.

Per audit setting, the configuration's accuracy minus vanilla's (Δacc, same seeds and items) is
a paired estimate with a seeds x items 95% CI (`acc_evidence`). With a non-inferiority margin δ on
the accuracy scale (`audit.margin`, pre-registered), each setting is

  non_inferior  the lower 95% bound of Δacc is above −δ, on a setting with a usable gap whose
                audit could detect a shortfall of δ (MDE of Δacc ≤ δ);
  inferior      the lower bound is at or below −δ, and the audit could detect δ (MDE ≤ δ)
                or the method is significantly worse than vanilla (upper bound below 0);
  not_shown     anything else: no usable gap, the setting did not run, or MDE > δ. Never a pass.

and the configuration (already confirmed on the main setting) is labelled

  setting_specific  some setting is inferior;
  winner            every audit setting is non_inferior and at least one shows a significant
                    gain (lower bound of Δacc > 0);
  inconclusive      otherwise: a setting not shown, no gain anywhere, or no audit settings.

`winner` is an intersection-union test: it needs *every* per-setting test to reject, so its level
is the largest single test's α and no correction across settings is needed (docs/statistics.md).
`LABELS` and the sentences here are the one source of the verdict's wording (CLI, report, status).
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from aar_ray.results import stats
from aar_ray.w2s.pgr import Arrays, finite, per_seed_arrays, ratio_se, t_crit

LABELS = ("winner", "setting_specific", "inconclusive")
STATUSES = ("non_inferior", "inferior", "not_shown")
WORDS = {"winner": "WINNER (transfers to every audit setting)",
         "setting_specific": "setting-specific (fails non-inferiority on an audit setting)",
         "inconclusive": "inconclusive (the audit cannot tell whether it transfers)"}


@dataclass(frozen=True)
class AccEvidence:
    """Method minus vanilla on one setting, on the accuracy scale, with its 95% CI and the
    smallest true Δacc the design detects at the given power (two-sided t, seeds' df)."""

    delta_acc: float
    ci_low_acc: float
    ci_high_acc: float
    se: float
    df: float
    mde_acc: float

    def to_dict(self) -> dict[str, float | None]:
        return {k: finite(v) for k, v in asdict(self).items()}


def design_mde_acc(vanilla_acc: list[float], vanilla_items: list[int], items: float,
                   seeds: int, *, disagreement: float, k: int = 1, alpha: float = 0.05,
                   power: float = 0.8) -> float:
    """The smallest true Δacc a paired test on `seeds` planned seeds of `items` items each
    detects (two-sided, at alpha / k, with `power`), from vanilla alone — never a candidate.

    Vanilla's per-seed accuracies (on seeds that each redraw their items: seed x item spread)
    less their binomial item variance give the training variance σ²; a method and vanilla each
    bring one, and the paired items add disagreement / items (the variance of a 0/±1
    difference that is non-zero on a share `disagreement` of the items: the design
    assumption `confirm.disagreement`). se = sqrt((2σ² + disagreement / items) / seeds)."""
    a = np.asarray(vanilla_acc, dtype=float)
    train = 0.0
    if a.size >= 2:
        item = float(np.mean(a * (1 - a) / np.asarray(vanilla_items, dtype=float)))
        train = max(0.0, float(a.var(ddof=1)) - item)
    se = math.sqrt((2 * train + disagreement / items) / seeds)
    return stats.min_detectable_delta(se, seeds - 1.0, k, alpha=alpha, power=power)


def acc_evidence(method: Arrays, vanilla: Arrays, mde_acc: float, *,
                 alpha: float = 0.05) -> AccEvidence:
    """Paired Δacc = mean_s(method_acc_s − vanilla_acc_s) with the seed x item se of
    `stats.paired_compare` (the same test, on the accuracy scale: no gap in the denominator);
    `mde_acc` is the design's (`design_mde_acc`), carried along."""
    m, v = per_seed_arrays(method, vanilla)
    d = [x - y for x, y in zip(m, v, strict=True)]
    mu = float(np.mean([x.mean() for x in d]))
    se, df = ratio_se(d, [np.ones_like(x) for x in d], mu)
    half = t_crit(alpha, df) * se if se > 0 else 0.0
    return AccEvidence(mu, mu - half, mu + half, se, df, mde_acc)


def vanilla_mde_acc(vanilla: Arrays, *, disagreement: float, alpha: float = 0.05,
                    power: float = 0.8) -> float:
    """`design_mde_acc` of a paired test on vanilla's own seeds and items (the audit's)."""
    v = per_seed_arrays(vanilla)[0]
    return design_mde_acc([float(x.mean()) for x in v], [x.size for x in v],
                          float(np.mean([x.size for x in v])), len(v),
                          disagreement=disagreement, alpha=alpha, power=power)


def transfer(method: Arrays, vanilla: Arrays, weak: Arrays, ceiling: Arrays, seeds: list[int],
             *, disagreement: float, power: float) -> dict[str, Any]:
    """One audit row's numbers on a held-out setting: Δacc with its CI and the design MDE from
    vanilla alone, PGR and ΔPGR (None without a usable gap: the ceiling must beat the teacher
    measurably), the gap and the seeds."""
    gap = float(np.mean([np.mean(c) - np.mean(w) for w, c in zip(weak, ceiling, strict=True)]))
    usable = gap > 0 and stats.paired_compare(ceiling, weak, weak, ceiling).p_value < 0.05
    mde = vanilla_mde_acc(vanilla, disagreement=disagreement, power=power)
    ev = acc_evidence(method, vanilla, mde).to_dict()
    return {**{k: ev[k] for k in ("delta_acc", "ci_low_acc", "ci_high_acc", "mde_acc")},
            "gap": gap, "seeds": seeds,
            "transfer_acc": float(np.mean(method)), "vanilla_acc": float(np.mean(vanilla)),
            "pgr": finite(stats.pgr_ci(method, weak, ceiling).mean) if usable else None,
            "delta_vs_vanilla": finite(stats.paired_compare(method, vanilla, weak,
                                                             ceiling).delta_pgr)
            if usable else None,
            "note_gap": "" if usable else
            f"gap {gap:+.3f}: the ceiling does not beat the teacher measurably"}


def status(s: dict[str, Any], margin: float) -> str:
    """One audit setting's entry (`delta_acc`, `ci_low_acc`, `ci_high_acc`, `mde_acc`,
    `usable`) -> non_inferior | inferior | not_shown, by the rule in the module docstring."""
    lo, hi, mde = s.get("ci_low_acc"), s.get("ci_high_acc"), s.get("mde_acc")
    if not s.get("usable") or lo is None or hi is None:
        return "not_shown"
    powered = mde is not None and mde <= margin
    if lo > -margin:
        return "non_inferior" if powered else "not_shown"
    return "inferior" if powered or hi < 0 else "not_shown"


def label(settings: dict[str, dict[str, Any]], margin: float) -> str:
    """A confirmed configuration's label from its audit settings' entries (see the module)."""
    got = [status(s, margin) for s in settings.values()]
    if "inferior" in got:
        return "setting_specific"
    gain = any((s.get("ci_low_acc") or 0.0) > 0 for s in settings.values())
    if got and all(g == "non_inferior" for g in got) and gain:
        return "winner"
    return "inconclusive"


def _name(c: dict[str, Any]) -> str:
    return (f"{c['method']} {json.dumps(c['params'])} (ΔPGR {c['delta']:+.3f}, 95% CI "
            f"[{c['ci_low']:+.3f}, {c['ci_high']:+.3f}], Holm p {c['p_holm']:.3g})")


def sentence(confirmed: list[dict[str, Any]], mde: float | None) -> str:
    """The verdict: winners first; a setting-specific or inconclusive configuration is only
    ever named with its qualifier; no confirmed one states the design's power."""
    could = ("the main setting has no gap, so no ΔPGR is detectable" if mde is None else
             f"the campaign could have detected ΔPGR ≥ {mde:.3f}")
    by = {lab: [c for c in confirmed if c["label"] == lab] for lab in LABELS}
    parts = []
    if by["winner"]:
        parts.append("Confirmed improvement over vanilla that also holds up in the audit: "
                     + "; ".join(_name(c) for c in by["winner"]) + ".")
    if by["setting_specific"]:
        parts.append("Setting-specific, not a general improvement (beats vanilla on fresh "
                     "seeds of the main setting, fails non-inferiority on an audit setting): "
                     + "; ".join(_name(c) for c in by["setting_specific"]) + ".")
    if by["inconclusive"]:
        parts.append("Confirmed on the main setting only; whether it transfers is "
                     "inconclusive (an audit setting was not shown non-inferior, or none "
                     "showed a gain): " + "; ".join(_name(c) for c in by["inconclusive"]) + ".")
    if not confirmed:
        parts.append(f"No confirmed improvement — {could}.")
    return " ".join(parts)


def audit_line(c: dict[str, Any]) -> str:
    """One confirmed configuration's audit, for the CLI: each setting's status, the label."""
    per = ", ".join(
        f"{k}: {v['status']}" + ("" if v.get("delta_acc") is None else
                                 f" (Δacc {100 * v['delta_acc']:+.1f} pts, CI "
                                 f"[{100 * v['ci_low_acc']:+.1f}, {100 * v['ci_high_acc']:+.1f}],"
                                 f" MDE {100 * (v['mde_acc'] or math.inf):.1f})")
        for k, v in c["audit"].items()) or "no audit settings"
    return f"  audit of {c['method']}: {per} -> {WORDS[c['label']]}"


def audit_entries(rows: list[dict[str, Any]], margin: float) -> dict[str, dict[str, Any]]:
    """One configuration's audit rows (`results.audit`, one per setting) -> per setting the
    summary's entry: Δacc with CI, margin, MDE, gap, seeds, status, and the PGR columns."""
    out = {}
    for r in rows:
        e = {k: r.get(k) for k in ("delta_acc", "ci_low_acc", "ci_high_acc", "mde_acc", "gap",
                                   "seeds", "pgr", "p_holm", "verdict")}
        e.update(margin=margin, delta=r.get("delta_vs_vanilla"), usable=not r.get("note_gap"))
        e["status"] = status(e, margin)
        out[r["setting"]] = e
    return out
