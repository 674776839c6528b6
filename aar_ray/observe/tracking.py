"""Weights & Biases: one run per scored trial, grouped by campaign, so the W&B UI can compare
methods (job_type) and parameters (`param.<k>` config keys, for parallel coordinates).

Offline by default (runs land in <campaign dir>/wandb/offline-run-<time>-<id>, to be
`wandb sync`ed later; wandb 0.31 offline writes only the `run-<id>.wandb` record log there);
WANDB_MODE in the environment overrides the config. Tracking must never break a campaign:
every failure becomes a warning and `None`.
"""
from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path
from typing import Any

from aar_ray.config import SWEEP_AGENT_PREFIX, CampaignConfig

log = logging.getLogger(__name__)
MODES = ("online", "offline", "disabled")


def run_id(campaign_name: str, trial_id: str) -> str:
    """Stable across reruns of the same campaign and trial, so a rerun updates (online) or is
    recognised (offline) instead of adding a duplicate run."""
    return hashlib.sha256(f"{campaign_name}/{trial_id}".encode()).hexdigest()[:16]


def _mode(cfg: CampaignConfig) -> str:
    """The config's `disabled` is an explicit opt-out; otherwise WANDB_MODE overrides it."""
    if cfg.wandb.mode == "disabled":
        return "disabled"
    env = os.environ.get("WANDB_MODE", "").strip().lower()
    if env == "dryrun":
        env = "offline"
    mode = env if env in MODES else cfg.wandb.mode
    if mode == "online" and not _has_credentials():
        log.warning("wandb: mode online but no WANDB_API_KEY (or `wandb login`); logging offline")
        mode = "offline"
    return mode


def _has_credentials() -> bool:
    """An API key in the environment, or one that `wandb login` stored in ~/.netrc."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    netrc = Path(os.environ.get("NETRC", Path.home() / ".netrc"))
    try:
        return "api.wandb.ai" in netrc.read_text() or bool(os.environ.get("WANDB_BASE_URL"))
    except OSError:
        return bool(os.environ.get("WANDB_BASE_URL"))


def _flat_params(params: dict[str, Any], prefix: str = "param.") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in params.items():
        if isinstance(v, dict):
            out.update(_flat_params(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def source(agent: str) -> str:
    """Who proposed a trial: `sweep:<search>` for a sweep's, `lab` for an agent's; W&B views
    split or colour runs by it to compare sweep and lab trials side by side."""
    if agent.startswith(SWEEP_AGENT_PREFIX):
        return "sweep:" + agent.removeprefix(SWEEP_AGENT_PREFIX)
    return "lab"


def trial_config(cfg: CampaignConfig, trial: dict[str, Any], direction: str) -> dict[str, Any]:
    params = dict(trial.get("params") or {})
    seeds = list(trial.get("seeds") or [])
    return {"agent": trial.get("agent"), "source": source(str(trial.get("agent"))),
            "direction": direction, "method": trial.get("method"),
            "params": params, **_flat_params(params), "seeds": seeds, "n_seeds": len(seeds),
            "task": cfg.setting.task, "weak": cfg.setting.weak, "strong": cfg.setting.strong,
            "student_mode": cfg.student.mode}


def trial_summary(scores: dict[str, Any]) -> dict[str, Any]:
    """Means over seeds, plus every seed's numbers under `seed/<seed>/...`."""
    per_seed = list(scores.get("per_seed") or [])

    def mean(key: str) -> float | None:
        values = [r[key] for r in per_seed if r.get(key) is not None]
        return sum(values) / len(values) if values else None

    out: dict[str, Any] = {"pgr": scores.get("pgr"), "pgr_se": scores.get("se"),
                           "transfer_acc": mean("transfer_acc"), "weak_acc": mean("weak_acc"),
                           "ceiling_acc": mean("ceiling_acc")}
    for r in per_seed:
        for key in ("weak_acc", "ceiling_acc", "transfer_acc", "pgr"):
            out[f"seed/{r['seed']}/{key}"] = r.get(key)
    return {k: v for k, v in out.items() if v is not None}


def _existing(root: Path, rid: str) -> Path | None:
    """An earlier local run of this id (offline-run-<ts>-<id> or run-<ts>-<id>)."""
    found = sorted((root / "wandb").glob(f"*run-*-{rid}"))
    return found[-1] if found else None


def log_trial(campaign_name: str, campaign_dir: str, cfg: CampaignConfig, trial: dict,
              direction: str, scores: dict) -> str | None:
    """Log one scored trial as its own W&B run; returns the local run directory (None when
    tracking is disabled or failed, or the trial was already logged: then its directory)."""
    try:
        mode = _mode(cfg)
        if mode == "disabled":
            return None
        root = Path(campaign_dir)  # wandb adds the `wandb/` folder itself
        rid = run_id(campaign_name, str(trial["trial_id"]))
        old = _existing(root, rid)
        if old is not None and mode == "offline":
            return str(old)
        (root / "wandb").mkdir(parents=True, exist_ok=True)
        os.environ.setdefault("WANDB_SILENT", "true")
        import wandb

        settings = wandb.Settings(silent=True, console="off", x_disable_stats=True,
                                  disable_git=True, save_code=False, disable_job_creation=True)
        run = wandb.init(
            project=cfg.wandb.project, mode=mode, group=campaign_name,
            job_type=str(trial.get("method")), name=str(trial["trial_id"]), id=rid,
            dir=str(root), config=trial_config(cfg, trial, direction),
            reinit="create_new",  # trials may be logged from several threads of one actor
            resume="allow", settings=settings)
        run_dir = Path(run.dir).parent  # run.dir is <run dir>/files
        try:
            run.summary.update(trial_summary(scores))
        finally:
            run.finish()
        return str(run_dir)
    except Exception as e:  # tracking must never break a campaign
        log.warning("wandb: could not log trial %s: %r", trial.get("trial_id"), e)
        return None
