"""The transfer audit of the confirmed, through the trusted path, as confirmation runs.

Per audit setting, a scorer that alone holds that setting's ground truth and a trial queue that
sends it the predictions: the driver trains nothing and sees only the scorer's numbers. Trials
run on `audit.seeds` (fresh: no other stage uses them) as the lab's own re-runs. The state of
setting i lives under CAMPAIGN/audit/s<i>/ (SQLite), so a resumed campaign re-runs only the audit
trials that had not finished; agents' own methods are found through a link to the campaign's
`agents/` (they run in the sandbox, as in their trials).
"""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import ray

from aar_ray.config import AuditConfig, CampaignConfig, SettingConfig
from aar_ray.lab import placement
from aar_ray.lab.actors import ScorerActor, TrialQueueActor, create

AUDIT_AGENT = "audit"  # the lab's own id for audit trials


def setting_config(cfg: CampaignConfig, sc: SettingConfig) -> CampaignConfig:
    """The campaign's config on held-out setting `sc`, whose only seeds are the audit's."""
    seeds = list(cfg.audit.seeds)
    return replace(cfg, setting=sc, seeds=seeds, confirm=replace(cfg.confirm, seeds=seeds),
                   audit=AuditConfig(seeds=[]))


def setting_dir(campaign_dir: Path, i: int) -> Path:
    d = Path(campaign_dir) / "audit" / f"s{i}"
    d.mkdir(parents=True, exist_ok=True)
    agents = Path(campaign_dir) / "agents"
    if not (d / "agents").is_symlink():
        (d / "agents").symlink_to(agents.resolve(), target_is_directory=True)
    return d


def run(lab: Any, configs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each of `configs` ({name, method, params, trial_id}) and vanilla on every audit setting;
    one row per (config, setting) in the shape `results.verdict.audit_entries` reads."""
    cfg, rows = lab.cfg, []
    for i, sc in enumerate(cfg.audit.settings):
        cs, d = setting_config(cfg, sc), setting_dir(lab.dir, i)
        names = (f"scorer-audit-{i}", f"trials-audit-{i}")
        scorer = create(names[0], ScorerActor, str(d), cs, num_gpus=cfg.resources.scorer_gpus,
                        **placement.head(cfg))
        queue = create(names[1], TrialQueueActor, str(d), cs, None, names[0],
                       **placement.head(cfg))
        try:
            ray.get(scorer.prepare.remote(cs.seeds))
            runs = {c["name"]: ray.get(queue.enqueue.remote(
                AUDIT_AGENT, c["method"], c["params"], cs.seeds, kind="confirm",
                parent=f"audit:{c['name']}"))["trial_id"]
                for c in [*configs, {"name": "vanilla", "method": "vanilla", "params": {}}]}
            ray.get(queue.drain.remote())
            done = {n: t for n, t in runs.items()
                    if ray.get(queue.status.remote(t))["status"] == "done"}
            vanilla = done.pop("vanilla", None)
            got = ray.get(scorer.transfer.remote(done, vanilla, cfg.confirm.disagreement,
                                                 cfg.confirm.power)) if vanilla else {}
        finally:
            for actor in (queue, scorer):
                ray.kill(actor, no_restart=True)
        for c in configs:  # a setting that did not run has no numbers: not shown
            rows.append({"trial_id": c["trial_id"], "setting": sc.label, "seeds": cs.seeds,
                         "audit_trial": runs.get(c["name"]), **got.get(c["name"], {})})
    return rows
