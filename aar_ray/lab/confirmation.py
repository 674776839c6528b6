"""The campaign's last act: a pre-registered confirmation of what exploration found, then the
transfer audit of what was confirmed, then a verdict a user can act on.

1. Pre-registration: the top-K distinct configurations by public ΔPGR over vanilla (flagged
   ones excluded) are written to `preregistration.json` *before* anything else runs, with
   the fresh seeds, the test and alpha. A resumed campaign reads the file, never re-chooses.
2. Confirmation: each configuration and vanilla are re-run on the fresh seeds (never used in
   exploration: new training runs and new test draws), scored on the private split, and
   tested against vanilla with the paired t test; Holm over the K only.
3. Audit: the confirmed configurations and vanilla on the held-out settings (never used for
   feedback). A configuration *wins* only if it is confirmed and does not lose to vanilla
   (ΔPGR < 0 with Holm p < alpha) on the majority of the audit settings.

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

from aar_ray.config import ConfirmConfig
from aar_ray.results import stats

PREREGISTRATION = "preregistration.json"
CONFIRM_AGENT = "confirmation"
# integrity flags that are evidence of cheating (lab/integrity.py); review flags such as
# `transfer_at_ceiling` do not disqualify: an honest method reaches them by noise
DISQUALIFYING = frozenset({"beyond_inputs", "ignores_teacher", "control_failed"})


def choose(explored: list[dict[str, Any]], k: int) -> list[dict[str, Any]]:
    """The top-k configurations by public ΔPGR, excluding any with evidence of cheating."""
    ok = [c for c in explored
          if c["public_delta"] is not None and not DISQUALIFYING & set(c["flags"])]
    ok.sort(key=lambda c: (-c["public_delta"], json.dumps([c["method"], c["params"]],
                                                          sort_keys=True)))
    return [{"name": f"c{i + 1}", **{key: c[key] for key in (
        "method", "params", "public_delta", "trials", "agents")}} for i, c in enumerate(ok[:k])]


def preregister(campaign_dir: Path, explored: list[dict[str, Any]],
                cfg: ConfirmConfig) -> dict[str, Any]:
    """Write (or, on resume, read back) the confirmation plan."""
    path = campaign_dir / PREREGISTRATION
    if path.exists():
        return json.loads(path.read_text())
    plan = {"created_at": time.time(), "top_k": cfg.top_k, "seeds": cfg.seeds,
            "alpha": cfg.alpha, "split": "private",
            "test": "paired t test of Δacc over vanilla on the same fresh seeds and items; "
                    "Holm over the K configurations",
            "candidates": choose(explored, cfg.top_k)}
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(plan, indent=2))
    os.replace(tmp, path)
    return plan


@dataclass
class Decision:
    candidates: list[dict[str, Any]]  # every pre-registered one, with its numbers
    confirmed: list[dict[str, Any]]  # ΔPGR > 0 and Holm p < alpha
    min_detectable_delta: float | None


def decide(results: dict[str, dict[str, Any]], plan: dict[str, Any],
           power: float = 0.8) -> Decision:
    """Holm over the K pre-registered configurations; `results` as `Scorer.confirm` gives."""
    alpha, k = plan["alpha"], max(1, len(plan["candidates"]))
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
    mdes = [stats.min_detectable_delta(r["se"], r["df"], k, alpha=alpha, power=power)
            for r in rows if r["se"] is not None and r["df"] is not None]
    mdes = [m for m in mdes if m == m]
    return Decision(rows, [r for r in rows if r["confirmed"]], max(mdes) if mdes else None)


def audit_verdict(rows: list[dict[str, Any]], alpha: float) -> dict[str, Any]:
    """One configuration's audit rows (one per held-out setting) -> per setting its ΔPGR, Holm
    p and verdict, and `loses_majority`: ΔPGR < 0 with Holm p < alpha on more than half."""
    settings = {r["setting"]: {"delta": r["delta_vs_vanilla"], "p_holm": r["p_holm"],
                               "pgr": r["pgr"], "verdict": r["verdict"],
                               "loses": bool(r["delta_vs_vanilla"] is not None
                                             and r["delta_vs_vanilla"] < 0
                                             and r["p_holm"] is not None
                                             and r["p_holm"] < alpha)}
                for r in rows}
    losses = sum(s["loses"] for s in settings.values())
    return {"settings": settings, "losses": losses,
            "loses_majority": losses > len(settings) // 2}


def verdict_sentence(winners: list[dict[str, Any]], confirmed: list[dict[str, Any]],
                     mde: float | None) -> str:
    could = f"the confirmation could have detected ΔPGR ≥ {mde:.3f}" if mde is not None \
        else "no configuration could be tested"
    if winners:
        names = "; ".join(f"{w['method']} {json.dumps(w['params'])} (ΔPGR {w['delta']:+.3f}, "
                          f"95% CI [{w['ci_low']:+.3f}, {w['ci_high']:+.3f}], Holm p "
                          f"{w['p_holm']:.3g})" for w in winners)
        return f"Confirmed improvement over vanilla that also holds up in the audit: {names}."
    if confirmed:
        return (f"{len(confirmed)} configuration(s) beat vanilla on fresh seeds but lose to it "
                "on the majority of the held-out audit settings: not a general improvement; "
                f"{could}.")
    return f"No confirmed improvement over vanilla — {could}."


def run(lab: Any) -> dict[str, Any]:
    """Pre-register, confirm on fresh seeds, audit the confirmed; the summary's verdict keys."""
    from aar_ray.results.audit import Candidate, audit

    cfg = lab.cfg
    t0 = time.time()
    explored = ray.get(lab.scorer.explored.remote())
    plan = preregister(lab.dir, explored, cfg.confirm)
    ray.get(lab.scorer.prepare.remote(cfg.confirm.seeds))  # teacher and ceiling, fresh seeds
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
    decision = decide(results, plan, cfg.confirm.power) if "vanilla" not in failed else \
        Decision([], [], None)
    audits: dict[str, Any] = {}
    if decision.confirmed and cfg.audit.settings:
        configs = [Candidate(r["trial_id"], r["agents"][0], r["method"], r["params"],
                             cfg.confirm.seeds, {}, r["pgr"]) for r in decision.confirmed]
        rows = audit(lab.dir, seeds=list(cfg.seeds), configs=configs)
        for r in decision.confirmed:
            audits[r["name"]] = audit_verdict([a for a in rows if a["trial_id"] ==
                                               r["trial_id"]], cfg.confirm.alpha)
    confirmed = []
    for r in decision.confirmed:
        a = audits.get(r["name"], {"settings": {}, "losses": 0, "loses_majority": False})
        confirmed.append({**{k: r[k] for k in ("method", "params", "pgr", "delta", "ci_low",
                                               "ci_high", "p_holm", "public_delta")},
                          "audit": a["settings"], "winner": not a["loses_majority"]})
    winners = [c for c in confirmed if c["winner"]]
    vanilla_pgr = results.get("vanilla", {}).get("estimate", {}).get("pgr")
    return {"confirmed": confirmed, "winners": winners, "candidates": decision.candidates,
            "confirmation_failed": failed, "confirmation_vanilla_pgr": vanilla_pgr,
            "min_detectable_delta": decision.min_detectable_delta,
            "verdict": verdict_sentence(winners, confirmed, decision.min_detectable_delta),
            "confirmation_seconds": round(time.time() - t0, 1)}
