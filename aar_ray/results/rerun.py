"""Reproduce one recorded trial from its provenance (`aar rerun TRIAL_ID`) and check the
result against the original's 95% CI. Runs in this process on the trusted side."""
from __future__ import annotations

import math
import tempfile
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from aar_ray.config import CampaignConfig, StudentConfig, load_campaign
from aar_ray.results import records, stats
from aar_ray.results.audit import AuditError, code_changed, finite


def version_diff(recorded: dict[str, str | None]) -> dict[str, dict[str, str | None]]:
    """{package: {recorded, current}} for every recorded package whose version changed."""
    out = {}
    for pkg, was in recorded.items():
        try:
            now = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            now = None
        if now != was:
            out[pkg] = {"recorded": was, "current": now}
    return out


def rerun(campaign_dir: str | Path, trial_id: str, *,
          cache_dir: str | Path | None = None) -> dict[str, Any]:
    """Reproduce a trial from its provenance in this process and score it on the campaign's
    own private items (a fresh Scorer on a temp directory draws the same public/private
    partition). `within_ci`: the rerun's private PGR lies in the original's 95% CI."""
    from aar_ray.lab.scorer import Scorer, _unpack
    from aar_ray.results.leaderboard import correctness, reference_correctness
    from aar_ray.sandbox.custom_methods import run_any

    campaign_dir = Path(campaign_dir)
    cfg: CampaignConfig = load_campaign(campaign_dir / "config.yaml")
    if cache_dir:
        cfg.cache_dir = str(cache_dir)
    row = records.scored_trial(campaign_dir, trial_id)
    if row is None:
        raise AuditError(f"{campaign_dir}: no recorded trial {trial_id!r}")
    prov = row["provenance"]
    for key in ("task", "weak", "strong"):
        if prov.get(key) not in (None, getattr(cfg.setting, key)):
            raise AuditError(f"trial {trial_id} ran on {key}={prov[key]!r} but config.yaml "
                             f"says {getattr(cfg.setting, key)!r}")
    student = StudentConfig(**prov["student"]) if prov.get("student") else cfg.student
    method, params, seeds = row["method"], row["params"], row["seeds"]
    changed = code_changed(campaign_dir, method, prov)
    original = _unpack(row["preds"])
    with tempfile.TemporaryDirectory() as tmp:
        scorer = Scorer(tmp, cfg)
        try:
            cfg.student = student
            new = dict(zip(seeds, run_any(cfg, campaign_dir, method, params,
                                          [scorer.student_inputs(s) for s in seeds]),
                           strict=True))
            scorer.record("original", "audit", method, params, seeds, prov, original)
            scorer.record("rerun", "audit", method, params, seeds, prov, new)
            weak, ceil = reference_correctness(scorer, "private", seeds)
            arrays = {tid: np.stack([correctness(scorer, tid)[s] for s in seeds])
                      for tid in ("original", "rerun")}
            w, c = (np.stack([x[s] for s in seeds]) for x in (weak, ceil))
            rng = np.random.default_rng(0)
            o = stats.pgr_ci(arrays["original"], w, c, rng=rng)
            r = stats.pgr_ci(arrays["rerun"], w, c, rng=rng)
            board = {k: scorer.score(p, "private")["pgr"] for k, p in
                     (("original", original), ("rerun", new))}
        finally:
            scorer.store.db.close()
    recorded = row["private"]["pgr"] if row["private"] else None
    agree = float(np.mean([(original[s].argmax(1) == new[s].argmax(1)).mean() for s in seeds]))
    return {
        "trial_id": trial_id, "method": method, "params": params, "seeds": seeds,
        "original_pgr": finite(o.mean), "original_ci": [finite(o.lo), finite(o.hi)],
        "rerun_pgr": finite(r.mean), "rerun_ci": [finite(r.lo), finite(r.hi)],
        "original_board_pgr": board["original"], "rerun_board_pgr": board["rerun"],
        "recorded_board_pgr": recorded,
        "within_ci": bool(math.isfinite(r.mean) and o.lo <= r.mean <= o.hi),
        "prediction_agreement": agree,
        "max_abs_prob_diff": float(max(np.abs(original[s] - new[s]).max() for s in seeds)),
        "code_changed": changed, "student_matches_config": student == cfg.student,
        "version_diff": version_diff(prov.get("versions", {})),
    }
