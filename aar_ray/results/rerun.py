"""Reproduce one recorded trial from its provenance (`aar rerun TRIAL_ID`) and check the
result against the original's 95% CI. Runs in this process on the trusted side."""
from __future__ import annotations

from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from aar_ray.config import CampaignConfig, StudentConfig, load_campaign
from aar_ray.results import records
from aar_ray.results.audit import AuditError, code_changed


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
    from aar_ray.lab.scorer import unpack
    from aar_ray.lab.truth import GroundTruth
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
    original = unpack(row["preds"])
    configured, cfg.student = cfg.student, student  # rerun as recorded, report any drift
    truth = GroundTruth(cfg)  # the same data hash, so the same public/private items
    new = dict(zip(seeds, run_any(cfg, campaign_dir, method, params,
                                  [truth.inputs(s) for s in seeds]), strict=True))
    o, r = truth.estimate(original, "private"), truth.estimate(new, "private")
    recorded = row["private"]["pgr"] if row["private"] else None
    agree = float(np.mean([(original[s].argmax(1) == new[s].argmax(1)).mean() for s in seeds]))
    return {
        "trial_id": trial_id, "method": method, "params": params, "seeds": seeds,
        "original_pgr": o["pgr"], "original_ci": [o["ci_lo"], o["ci_hi"]],
        "rerun_pgr": r["pgr"], "rerun_ci": [r["ci_lo"], r["ci_hi"]],
        "recorded_pgr": recorded,
        "within_ci": bool(r["pgr"] is not None and o["ci_lo"] is not None
                          and o["ci_lo"] <= r["pgr"] <= o["ci_hi"]),
        "prediction_agreement": agree,
        "max_abs_prob_diff": float(max(np.abs(original[s] - new[s]).max() for s in seeds)),
        "code_changed": changed, "student_matches_config": student == configured,
        "version_diff": version_diff(prov.get("versions", {})),
    }
