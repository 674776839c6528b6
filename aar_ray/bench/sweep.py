"""Bench: does the lab beat a plain sweep? The default offline lab campaign against an Optuna
(TPE) sweep and a random sweep over the method registry, at the same number of trials, each
through the same queue, scorer and end stage, on several campaign seeds. A campaign's "best
confirmed ΔPGR" is the largest ΔPGR over vanilla its confirmation stage confirmed, 0 when it
confirmed nothing (it delivered no improvement). Numbers go to bench/results.json under
`sweep` (read, merged, written back: other benchmarks keep their keys).

AAR_BENCH_SWEEP_CONFIG (a campaign YAML) and AAR_BENCH_SWEEP_SEEDS (comma-separated) shrink it
where the full run does not fit; the table's title says what ran."""
from __future__ import annotations

import copy
import json
import os
import statistics
import time
from dataclasses import replace
from pathlib import Path

from aar_ray.bench import merge_results
from aar_ray.config import CampaignConfig, load_campaign
from aar_ray.lab.campaign import run_campaign
from aar_ray.results.compare import campaign_facts

ROOT = Path(__file__).resolve().parents[2]
DEFAULT = ROOT / "jobs" / "configs" / "embedded.yaml"
ARMS = ("lab", "optuna", "random")


def arm_config(base: CampaignConfig, arm: str, seed: int) -> CampaignConfig:
    """`base` explored by the agents (`lab`) or by a sweep, with the campaign seed `seed`; a
    sweep's trial count is the fleet's (agents × trials_per_agent), so budgets are equal, and
    no wall-clock cut."""
    cfg = copy.deepcopy(base)
    cfg.name, cfg.seed = f"bench-{arm}-s{seed}", seed
    cfg.root = str(ROOT / "campaigns" / "bench-sweep")
    cfg.budget.wall_clock_s = 0  # equal trials, not equal time: a shared machine's pace varies
    if arm != "lab":
        cfg.explorer, cfg.sweep.search, cfg.sweep.trials = "sweep", arm, 0
    cfg.validate(cfg.name)
    return cfg


def finished(cfg: CampaignConfig) -> dict | None:
    """The summary of a finished campaign of exactly this configuration (wherever the bench's
    root was) under the root, if there is one: an interrupted bench resumes instead of
    re-running its campaigns."""
    for summary in sorted(Path(cfg.root).glob(f"{cfg.name}-*/summary.json")):
        if replace(load_campaign(summary.parent / "config.yaml"), root=cfg.root) == cfg:
            return json.loads(summary.read_text())
    return None


def _row(arm: str, seed: int, summary: dict) -> dict:
    f = campaign_facts(summary["campaign_dir"])
    b = f["best"]
    return {"arm": arm, "campaign seed": seed, "trials": f["trials"], "failed": f["failed"],
            "best confirmed ΔPGR": b["delta"] if b else 0.0,
            "95% CI": f"[{b['ci_low']:+.3f}, {b['ci_high']:+.3f}]" if b else "-",
            "best method": b["method"] if b else "none confirmed",
            "trials to first try it": f["trials_to_best"] or "-",
            "public→private Spearman": f["spearman"],
            "methods explored": len(f["methods"]), "configs": f["configs"],
            "minutes": summary["seconds"] / 60, "campaign": f["campaign"]}


def run() -> tuple[str, list[dict]]:
    config = Path(os.environ.get("AAR_BENCH_SWEEP_CONFIG", DEFAULT))
    seeds = [int(s) for s in os.environ.get("AAR_BENCH_SWEEP_SEEDS", "0,1,2").split(",")]
    base = load_campaign(config)
    rows = []
    for seed in seeds:
        for arm in ARMS:
            t0, cfg = time.time(), arm_config(base, arm, seed)
            summary = finished(cfg) or run_campaign(cfg, progress=False)
            rows.append(_row(arm, seed, summary))
            print(f"bench sweep: {arm} seed {seed} done in {time.time() - t0:.0f} s", flush=True)
    means = {arm: statistics.mean(r["best confirmed ΔPGR"] for r in rows if r["arm"] == arm)
             for arm in ARMS}
    for arm in ARMS:
        mine = [r for r in rows if r["arm"] == arm]
        confirmed = sum(r["best method"] != "none confirmed" for r in mine)
        rows.append({"arm": f"{arm} (mean)", "trials": mine[0]["trials"],
                     "best confirmed ΔPGR": means[arm],
                     "confirmed something": f"{confirmed}/{len(mine)}",
                     "methods explored": statistics.mean(r["methods explored"] for r in mine),
                     "minutes": statistics.mean(r["minutes"] for r in mine)})
    merge_results("sweep", {**{f"{arm}_best_confirmed_delta": round(means[arm], 4) for arm in ARMS},
                 "trials_per_arm": base.exploration_trials(), "campaign_seeds": seeds,
                 "config": str(config.relative_to(ROOT) if config.is_relative_to(ROOT)
                               else config),
                 "campaigns": [r for r in rows if "campaign" in r]})
    return (f"Lab vs sweeps at equal trial budget ({config.name}, "
            f"{base.exploration_trials()} trials per arm, campaign seeds {seeds})"), rows
