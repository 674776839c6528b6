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


SOURCES = {"baseline": "baseline", "control": "control", "confirm": "confirmation"}


def source(agent: str, kind: str = "agent") -> str:
    """Who ran a trial and why: the lab's own `baseline`, `control` (teacher-use) and
    `confirmation` runs, `sweep:<search>` for a sweep's trials, `lab` for an agent's. W&B views
    split or colour runs by it to compare sweep and lab trials side by side."""
    if kind in SOURCES:
        return SOURCES[kind]
    if agent.startswith(SWEEP_AGENT_PREFIX):
        return "sweep:" + agent.removeprefix(SWEEP_AGENT_PREFIX)
    return "lab"


def job_type(trial: dict[str, Any]) -> str:
    """The method, except for the lab's controls, which W&B keeps apart (`control:<method>`)."""
    method = str(trial.get("method"))
    return f"control:{method}" if trial.get("kind") == "control" else method


def trial_config(cfg: CampaignConfig, trial: dict[str, Any], direction: str) -> dict[str, Any]:
    params = dict(trial.get("params") or {})
    seeds = list(trial.get("seeds") or [])
    kind = str(trial.get("kind") or "agent")
    return {"agent": trial.get("agent"), "source": source(str(trial.get("agent")), kind),
            "kind": kind, "parent": trial.get("parent"), "explorer": cfg.explorer,
            "direction": direction, "method": trial.get("method"),
            "params": params, **_flat_params(params), "seeds": seeds, "n_seeds": len(seeds),
            "task": cfg.setting.task, "weak": cfg.setting.weak, "strong": cfg.setting.strong,
            "setting": cfg.setting.label, "student_mode": cfg.student.mode}


def tags(config: dict[str, Any]) -> list[str]:
    """Short filters for the W&B runs table: source, explorer, method, setting."""
    return [str(config[k]) for k in ("source", "explorer", "method", "setting")]


def trial_summary(scores: dict[str, Any]) -> dict[str, Any]:
    """Means over seeds, plus every seed's numbers under `seed/<seed>/...`."""
    per_seed = list(scores.get("per_seed") or [])

    def mean(key: str) -> float | None:
        values = [r[key] for r in per_seed if r.get(key) is not None]
        return sum(values) / len(values) if values else None

    vs = scores.get("vs_vanilla") or {}  # ΔPGR over vanilla: the number the verdict is about
    out: dict[str, Any] = {"pgr": scores.get("pgr"), "pgr_se": scores.get("se"),
                           "pgr_ci_lo": scores.get("ci_lo"), "pgr_ci_hi": scores.get("ci_hi"),
                           "delta_pgr": vs.get("delta"), "delta_pgr_ci_lo": vs.get("lo"),
                           "delta_pgr_ci_hi": vs.get("hi"), "delta_pgr_p": vs.get("p"),
                           "flags": ",".join(scores.get("flags") or []) or "none",
                           "teacher_use_drop": scores.get("teacher_use_drop"),
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
        config = trial_config(cfg, trial, direction)
        run = wandb.init(
            project=cfg.wandb.project, mode=mode, group=campaign_name, job_type=job_type(trial),
            name=str(trial["trial_id"]), id=rid, tags=tags(config), dir=str(root), config=config,
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


VERDICT_COLUMNS = ("name", "method", "params", "public_delta", "delta", "ci_low", "ci_high",
                   "p_holm", "confirmed", "winner")


def log_verdict(campaign_name: str, campaign_dir: str, cfg: CampaignConfig,
                summary: dict[str, Any]) -> str | None:
    """One `summary` run per campaign: the verdict sentence, and the pre-registered
    confirmation as a wandb.Table (one row per candidate: public and confirmed ΔPGR over
    vanilla with its CI, Holm p, confirmed, winner). None when disabled or failed."""
    try:
        mode = _mode(cfg)
        if mode == "disabled":
            return None
        import json

        import wandb

        winners = {c["name"] for c in summary.get("confirmed", []) if c.get("winner")}
        rows = [[json.dumps(c.get(k)) if k == "params" else c.get(k) for k in VERDICT_COLUMNS[:-1]]
                + [c["name"] in winners] for c in summary.get("candidates", [])]
        settings = wandb.Settings(silent=True, console="off", x_disable_stats=True,
                                  disable_git=True, save_code=False, disable_job_creation=True)
        run = wandb.init(project=cfg.wandb.project, mode=mode, group=campaign_name,
                         job_type="summary", name=f"{campaign_name}-verdict",
                         id=run_id(campaign_name, "verdict"), dir=campaign_dir,
                         tags=["summary", cfg.explorer, cfg.setting.label], reinit="create_new",
                         resume="allow", settings=settings,
                         config={"explorer": cfg.explorer, "setting": cfg.setting.label})
        try:
            run.log({"verdict": wandb.Table(columns=list(VERDICT_COLUMNS), data=rows)})
            run.summary.update({"verdict_text": summary.get("verdict"),
                                "winners": len(winners), "candidates": len(rows)})
        finally:
            run.finish()
        return str(Path(run.dir).parent)
    except Exception as e:  # tracking must never break a campaign
        log.warning("wandb: could not log the verdict: %r", e)
        return None
