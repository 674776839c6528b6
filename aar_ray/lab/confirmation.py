"""The campaign's last act: a pre-registered confirmation of what exploration found, then the
transfer audit of what was confirmed, then a verdict a user can act on.

1. Pre-registration: the best configuration of each of the top-K methods by public ΔPGR over
   vanilla (flagged ones excluded; `confirm.choose`) are written to `preregistration.json`
   *before* anything else runs, with the fresh seeds, the test, alpha and the power design.
   A resumed campaign reads the file, never re-chooses.
2. Confirmation: each configuration and vanilla are re-run on the fresh seeds (never used in
   exploration: new training runs and new test draws), scored on the private split, and
   tested against vanilla with the paired t test; Holm over the K only.
3. Audit: the confirmed configurations and vanilla on the held-out settings (never used for
   feedback), on fresh audit seeds. Each confirmed configuration is labelled winner,
   setting_specific or inconclusive by the non-inferiority rule of `results.verdict`.

`decide` is pure (numbers in, verdict out), so the statistics are tested by simulation.
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ray

from aar_ray.config import CampaignConfig
from aar_ray.results import stats, verdict

PREREGISTRATION = "preregistration.json"
CONFIRM_AGENT = "confirmation"
# integrity flags that are evidence of cheating (lab/integrity.py); review flags such as
# `transfer_at_ceiling` do not disqualify: an honest method reaches them by noise
DISQUALIFYING = frozenset({"beyond_inputs", "ignores_teacher", "control_failed"})


def choose(explored: list[dict[str, Any]], k: int, rule: str = "family") -> list[dict[str, Any]]:
    """The k configurations to confirm, by public ΔPGR, excluding any with evidence of
    cheating. `family` (default): the best configuration of each of the top-k methods, so the
    K are K different bets; `config`: the top-k configurations, which can be near-copies of
    one method (kept for comparison)."""
    ok = [c for c in explored
          if c["public_delta"] is not None and not DISQUALIFYING & set(c["flags"])]
    ok.sort(key=lambda c: (-c["public_delta"], json.dumps([c["method"], c["params"]],
                                                          sort_keys=True)))
    if rule == "family":
        seen: set[str] = set()
        ok = [c for c in ok if not (c["method"] in seen or seen.add(c["method"]))]
    return [{"name": f"c{i + 1}", **{key: c[key] for key in (
        "method", "params", "public_delta", "trials", "agents")}} for i, c in enumerate(ok[:k])]


def power_design(d: dict[str, Any], cfg: CampaignConfig) -> dict[str, Any]:
    """The design's power from vanilla alone (`Scorer.design` gives `d`; never a candidate):
    the confirmation's MDE after Holm over K, and each audit setting's on its own planned
    items (the whole test split) with the audit seeds, and the seeds it would need for its MDE
    to reach the margin (`verdict.design_mde_acc`). Before the audit runs, the main setting's
    vanilla variance stands in for each setting's; the audit then reports its own MDE."""
    from aar_ray.w2s.tasks import TASKS

    c, a = cfg.confirm, cfg.audit

    def mde(items: float, seeds: int, k: int) -> float:
        return verdict.design_mde_acc(d["vanilla_acc"], d["vanilla_items"], items, seeds,
                                      disagreement=c.disagreement, k=k, alpha=c.alpha,
                                      power=c.power)

    def audit_setting(s: Any) -> dict[str, Any]:
        items = s.test_size or TASKS.get(s.task).default_test_size
        return {"setting": s.label, "items": items, "mde_acc": mde(items, len(a.seeds), 1),
                "seeds_needed_for_margin": next(
                    (n for n in range(2, 201) if mde(items, n, 1) <= a.margin), None)}

    items = float(sum(d["items"]) / len(d["items"]))
    acc = mde(items, len(c.seeds), c.top_k)
    return {"disagreement": c.disagreement, "vanilla_seeds": len(d["vanilla_acc"]),
            "confirmation": {"seeds": len(c.seeds), "items": items, "gap": d["gap"],
                             "k": c.top_k, "mde_acc": acc,
                             "mde_delta_pgr": acc / d["gap"] if d["gap"] > 0 else None},
            "audit": {"margin": a.margin, "seeds": a.seeds,
                      "settings": [audit_setting(s) for s in a.settings]}}


def preregister(campaign_dir: Path, explored: list[dict[str, Any]], cfg: CampaignConfig,
                design: dict[str, Any],
                candidates: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """Write (or, on resume, read back) the confirmation plan, with its power `design`; the
    candidates are chosen from `explored` unless given (`aar confirm`)."""
    path = campaign_dir / PREREGISTRATION
    if path.exists():
        return json.loads(path.read_text())
    c = cfg.confirm
    plan = {"created_at": time.time(), "top_k": c.top_k, "seeds": c.seeds,
            "alpha": c.alpha, "split": "private",
            "test": "paired t test of Δacc over vanilla on the same fresh seeds and items; "
                    "Holm over the K configurations",
            "winner_rule": "non-inferiority (margin on the accuracy scale) on every audit "
                           "setting and a significant gain on one (results/verdict.py)",
            "margin": cfg.audit.margin, "audit_seeds": cfg.audit.seeds, "design": design,
            "choose": "given" if candidates else c.choose,
            "candidates": candidates or choose(explored, c.top_k, c.choose)}
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(plan, indent=2))
    os.replace(tmp, path)
    return plan


@dataclass
class Decision:
    candidates: list[dict[str, Any]]  # every pre-registered one, with its numbers
    confirmed: list[dict[str, Any]]  # ΔPGR > 0 and Holm p < alpha
    min_detectable_delta: float | None  # the design's (None only if the main gap is <= 0)


def decide(results: dict[str, dict[str, Any]], plan: dict[str, Any]) -> Decision:
    """Holm over the K pre-registered configurations; `results` as `Scorer.confirm` gives."""
    alpha = plan["alpha"]
    rows = []
    for c in plan["candidates"]:
        r = results[c["name"]]
        vs = r["vs_vanilla"] or {}
        rows.append({**c, "trial_id": r["trial_id"], "pgr": r["estimate"]["pgr"],
                     "pgr_se": r["estimate"]["se"], "delta": vs.get("delta"),
                     "ci_low": vs.get("lo"), "ci_high": vs.get("hi"), "se": vs.get("se"),
                     "df": vs.get("df"), "p": vs.get("p")})
    adjusted = stats.holm([r["p"] if r["p"] is not None else float("nan") for r in rows])
    for r, p in zip(rows, adjusted, strict=True):
        r["p_holm"] = None if p != p else p
        r["confirmed"] = bool(r["p_holm"] is not None and r["p_holm"] < alpha
                              and r["delta"] is not None and r["delta"] > 0)
    return Decision(rows, [r for r in rows if r["confirmed"]],
                    plan["design"]["confirmation"]["mde_delta_pgr"])


def run(lab: Any, candidates: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """Pre-register (exploration's choice, or the given `candidates`), confirm on fresh seeds,
    audit the confirmed; the summary's verdict keys."""
    from aar_ray.lab import audit_stage

    cfg = lab.cfg
    t0 = time.time()
    explored = ray.get(lab.scorer.explored.remote())
    ray.get(lab.scorer.prepare.remote(cfg.confirm.seeds))  # teacher and ceiling, fresh seeds
    plan = preregister(lab.dir, explored, cfg, power_design(
        ray.get(lab.scorer.design.remote(cfg.confirm.seeds)), cfg), candidates)
    runs = {}  # run under the lab's own id: the agents' trial and submission counts stay theirs
    for c in [*plan["candidates"], {"name": "vanilla", "method": "vanilla", "params": {}}]:
        runs[c["name"]] = ray.get(lab.queue.enqueue.remote(
            CONFIRM_AGENT, c["method"], c["params"], cfg.confirm.seeds, kind="confirm",
            parent=f"confirm:{c['name']}"))["trial_id"]
    ray.get(lab.queue.drain.remote())
    failed = [n for n, t in runs.items()
              if ray.get(lab.queue.status.remote(t))["status"] != "done"]
    vanilla = runs.pop("vanilla")
    results = ray.get(lab.scorer.confirm.remote(
        {n: t for n, t in runs.items() if n not in failed}, vanilla)) \
        if "vanilla" not in failed else {}
    for name in failed:
        results[name] = {"trial_id": runs.get(name), "estimate": {"pgr": None, "se": None},
                         "vs_vanilla": None}
    decision = decide(results, plan) if "vanilla" not in failed else \
        Decision([], [], plan["design"]["confirmation"]["mde_delta_pgr"])
    audits: dict[str, Any] = {}
    if decision.confirmed and cfg.audit.settings:
        rows = audit_stage.run(lab, decision.confirmed)
        for r in decision.confirmed:
            audits[r["name"]] = verdict.audit_entries(
                [a for a in rows if a["trial_id"] == r["trial_id"]], cfg.audit.margin)
    confirmed = []
    for r in decision.confirmed:
        a = audits.get(r["name"], {})
        lab_ = verdict.label(a, cfg.audit.margin)
        confirmed.append({**{k: r[k] for k in ("method", "params", "pgr", "delta", "ci_low",
                                               "ci_high", "p_holm", "public_delta")},
                          "audit": a, "label": lab_, "winner": lab_ == "winner"})
    winners = [c for c in confirmed if c["winner"]]
    vanilla_pgr = results.get("vanilla", {}).get("estimate", {}).get("pgr")
    return {"confirmed": confirmed, "winners": winners, "candidates": decision.candidates,
            "confirmation_failed": failed, "confirmation_vanilla_pgr": vanilla_pgr,
            "min_detectable_delta": decision.min_detectable_delta,
            "verdict": verdict.sentence(confirmed, decision.min_detectable_delta),
            "confirmation_seconds": round(time.time() - t0, 1)}
