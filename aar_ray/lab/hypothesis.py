"""`aar confirm`: a researcher's own hypotheses through the campaign's end stage.

The listed configurations are pre-registered as they are (no exploration chooses them), then
confirmed on fresh seeds against vanilla, audited on the held-out settings and labelled by the
same rule as a campaign's (`confirmation.run`, `results.verdict`). The lab's vanilla baseline runs
on the exploration seeds first: the power design reads its seed x item spread. A method of the
researcher's own (`--method-file PATH.py`) is stored as the user's, like an agent's method, and
runs in the same sandbox; a candidate names it by the file's stem.
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import ray

from aar_ray.config import CampaignConfig, ConfigError, save_campaign
from aar_ray.lab import campaign, confirmation
from aar_ray.sandbox import custom_methods

USER = "user"  # the agent id the hypotheses are recorded under


def parse(spec: str) -> dict[str, Any]:
    """'METHOD {"param": value}' (params optional) -> {"method", "params"}."""
    method, _, rest = spec.strip().partition(" ")
    try:
        params = json.loads(rest) if rest.strip() else {}
    except json.JSONDecodeError as e:
        raise ConfigError(f"--candidate {spec!r}: params are not JSON ({e})") from None
    if not method or not isinstance(params, dict):
        raise ConfigError(f"--candidate {spec!r}: expected 'METHOD {{\"param\": value}}'")
    return {"method": method, "params": params}


def hypotheses(specs: list[str], own: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    """The pre-registered candidates, in the order given, as `confirmation.choose` gives; a
    method named as one of `own` (method-file stems) is the user's custom method."""
    from aar_ray.w2s.methods import METHODS

    out = [parse(s) for s in specs]
    if not out:
        raise ConfigError("aar confirm needs at least one --candidate")
    for c in out:
        if c["method"] in own:
            c["method"] = custom_methods.method_id(USER, c["method"])
        elif c["method"] not in METHODS.names():
            raise ConfigError(f"--candidate {c['method']!r}: not a registered method or a "
                              f"--method-file's stem (methods: {', '.join(METHODS.names())})")
    return [{"name": f"c{i + 1}", **c, "public_delta": None, "trials": [], "agents": [USER]}
            for i, c in enumerate(out)]


def confirm(cfg: CampaignConfig, specs: list[str],
            method_files: list[str] = ()) -> dict[str, Any]:
    """Create a campaign directory, pre-register `specs`, run the end stage; the summary."""
    from aar_ray.w2s.methods import METHODS

    t0 = time.time()
    own = {Path(p).stem.lower(): Path(p).read_text() for p in method_files}
    for name, source in own.items():  # refused here, before any directory or Ray
        custom_methods.check_source(name, source, set(METHODS.names()))
    cands = hypotheses(specs, tuple(own))
    cfg.confirm.top_k = len(cands)
    cfg.validate()
    campaign_dir = campaign.new_campaign_dir(cfg)
    save_campaign(cfg, campaign_dir / "config.yaml")
    for name, source in own.items():
        custom_methods.save(campaign_dir, USER, name, source, set(METHODS.names()))
    started = campaign.init_ray(cfg)
    try:
        lab = campaign.start_lab(cfg, campaign_dir, with_agents=False)
        campaign.run_baseline(lab)
        end = confirmation.run(lab, candidates=cands)
        summary = {"campaign_dir": str(campaign_dir), "setting": cfg.setting.label,
                   "seconds": round(time.time() - t0, 1), "explored_configurations": 0,
                   "public_private_spearman": None, "max_method_share": None, **end}
        (Path(campaign_dir) / "summary.json").write_text(
            json.dumps(summary, indent=2, default=str))
        return summary
    finally:
        if started:
            ray.shutdown()
