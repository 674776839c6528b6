"""A campaign: start (or resume) the lab on Ray, let the agents research until their budgets
end, and write the leaderboard. Everything lives in one campaign directory:

    config.yaml  scorer.sqlite  forum.sqlite  trials.sqlite  summary.json
    agents/<agent-id>/{direction.md, notebook.md, state.json, trials.jsonl, tool_calls.jsonl}
"""
from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ray

from aar_ray.brains.base import total_tokens
from aar_ray.config import CampaignConfig, load_campaign, save_campaign
from aar_ray.lab import NAMESPACE
from aar_ray.lab.actors import ForumActor, ScorerActor, TrialQueueActor, create
from aar_ray.lab.agent import ResearcherActor
from aar_ray.lab.directions import DIRECTIONS
from aar_ray.lab.sweep import explore_task
from aar_ray.results.diversity import diversity

FORWARDED_ENV = ("WANDB_MODE", "WANDB_PROJECT", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE",
                 "AAR_CACHE", "HF_HOME")


def secrets(*names: str) -> dict[str, Any]:
    """Secrets from the driver's environment (or NAME_FILE, a path to a file holding one),
    as object refs for the actors that need them: the Anthropic key for the agents, the W&B
    key for the trial queue. Never runtime_env env_vars: Ray's runtime_env agent writes those
    to its log in plain text (measured with Ray 2.60)."""
    out = {}
    for name in names:
        value = os.environ.get(name)
        if not value and os.environ.get(f"{name}_FILE"):
            value = Path(os.environ[f"{name}_FILE"]).read_text().strip()
        if value:
            out[name] = ray.put(value)  # nested in a dict, it stays a ref in the task spec
    return out


# Parts of a variable's name that mark a credential. Ray's own auth token (RAY_AUTH_TOKEN) is
# not ours to remove: every Ray process authenticates every call with it.
SECRET_PARTS = frozenset({"KEY", "TOKEN", "SECRET", "PASSWORD", "CREDENTIALS"})


def is_secret(name: str) -> bool:
    return not name.startswith("RAY_") and bool(SECRET_PARTS & set(name.upper().split("_")))


@contextmanager
def without_secrets() -> Iterator[None]:
    """Credentials (`is_secret`, and their NAME_FILE paths) out of os.environ while Ray starts
    its local processes: the GCS, the raylet and every worker the raylet forks copy the
    environment of the process that starts them, so an embedded cluster would hand the
    driver's API keys to every task, actor and sandboxed method. Put back for the driver
    alone afterwards (`secrets` reads them there); an actor that needs one gets it through
    the object store."""
    held = {k: os.environ.pop(k) for k in [k for k in os.environ if is_secret(k)]}
    try:
        yield
    finally:
        os.environ.update(held)


def init_ray(cfg: CampaignConfig) -> bool:
    """Connect to RAY_ADDRESS if set, else start an embedded cluster whose processes never see
    the driver's credentials. Env vars reach workers only through runtime_env on a `ray start`
    cluster, so forward the ones we need (never a secret: see `secrets`). True if we started
    it."""
    if ray.is_initialized():
        return False
    address = os.environ.get("RAY_ADDRESS")
    env = {k: os.environ[k] for k in FORWARDED_ENV if k in os.environ}
    env.setdefault("WANDB_MODE", cfg.wandb.mode)
    env["RAY_AUTH_MODE"] = os.environ.get("RAY_AUTH_MODE", "disabled")
    runtime_env = {"env_vars": env}
    with without_secrets():
        if address:
            ray.init(address=address, namespace=NAMESPACE, runtime_env=runtime_env,
                     log_to_driver=False)
        else:
            ray.init(address="local", namespace=NAMESPACE, include_dashboard=False,
                     runtime_env=runtime_env, log_to_driver=False)
    return True


def new_campaign_dir(cfg: CampaignConfig) -> Path:
    path = Path(cfg.root) / f"{cfg.name}-{time.strftime('%Y%m%d-%H%M%S')}"
    path.mkdir(parents=True, exist_ok=False)
    return path.resolve()


def directions(cfg: CampaignConfig) -> list[str]:
    pool = cfg.directions or DIRECTIONS
    return [pool[i % len(pool)] for i in range(cfg.agents)]


@dataclass
class Lab:
    cfg: CampaignConfig
    dir: Path
    scorer: Any
    forum: Any
    queue: Any
    agents: list[tuple[Any, list[str]]]
    prepared: dict[str, Any]


def start_lab(cfg: CampaignConfig, campaign_dir: Path, with_agents: bool = True) -> Lab:
    d = str(campaign_dir)
    scorer = create("scorer", ScorerActor, d, cfg, num_gpus=cfg.resources.scorer_gpus)
    prepared = ray.get(scorer.prepare.remote())
    forum = create("forum", ForumActor, d)
    queue = create("trials", TrialQueueActor, d, cfg, scorer, secrets("WANDB_API_KEY"))
    specs = [(f"agent-{i}", direction, i) for i, direction in enumerate(directions(cfg))
             if with_agents]
    k = cfg.resources.agents_per_actor
    agents = []
    for j in range(0, len(specs), k):
        group = specs[j:j + k]
        name = group[0][0] if k == 1 else f"agents-{j}-{j + len(group) - 1}"
        agents.append((create(name, ResearcherActor, group, d, cfg,
                              secrets("ANTHROPIC_API_KEY")), [g[0] for g in group]))
    return Lab(cfg, campaign_dir, scorer, forum, queue, agents, prepared)


def run_baseline(lab: Lab) -> None:
    """The lab's own vanilla trial on every seed: the bar each method is compared with."""
    trials = ray.get(lab.queue.list.remote(agent="baseline"))
    tid = trials[0]["trial_id"] if trials else ray.get(lab.queue.enqueue.remote(
        "baseline", "vanilla", {}, None, "baseline"))["trial_id"]
    status = ray.get(lab.queue.status.remote(tid, "baseline", 600))
    if status["status"] == "done":
        ray.get(lab.scorer.submit.remote(tid, "baseline"))


def over_budget(lab: Lab) -> str | None:
    """Which campaign-wide Claude budget is spent, if any (per-agent budgets are the brains')."""
    b = lab.cfg.budget
    if not (b.tokens_total or b.dollars_total):
        return None
    usage = [s["usage"] for a, _ in lab.agents for s in ray.get(a.summaries.remote())]
    tokens = sum(total_tokens(u) for u in usage)
    dollars = sum(u.get("dollars", 0.0) for u in usage)
    if b.tokens_total and tokens >= b.tokens_total:
        return f"campaign token budget ({tokens} >= {b.tokens_total})"
    if b.dollars_total and dollars >= b.dollars_total:
        return f"campaign dollar budget (${dollars:.4f} >= ${b.dollars_total})"
    return None


def run_controls(lab: Lab) -> None:
    """Teacher-use control for every leaderboard candidate (the top entries, by the scorer's
    private numbers): the same method on shuffled teacher labels."""
    k = lab.cfg.scoring.control_top_k
    board = [e for e in ray.get(lab.scorer.leaderboard.remote("private", 1000))
             if e["agent"] != "baseline"][:k]
    for e in board:
        ray.get(lab.queue.enqueue_control.remote(e["trial_id"]))
    ray.get(lab.queue.drain.remote())


def run_campaign(cfg: CampaignConfig | None = None, *, resume: str | Path | None = None,
                 progress: bool = True) -> dict[str, Any]:
    """Run a new campaign from `cfg`, or continue the one in `resume`; returns the summary."""
    t0 = time.time()
    if resume:
        campaign_dir = Path(resume).resolve()
        cfg = load_campaign(campaign_dir / "config.yaml")
    else:
        assert cfg is not None
        campaign_dir = new_campaign_dir(cfg)
        save_campaign(cfg, campaign_dir / "config.yaml")
    started = init_ray(cfg)
    if threading.current_thread() is threading.main_thread():
        # after ray.init, whose own SIGTERM handler aborts: a stopped campaign shuts Ray down
        # cleanly instead, and `aar run --resume DIR` continues it
        signal.signal(signal.SIGTERM, _interrupt)
    try:
        lab = start_lab(cfg, campaign_dir, with_agents=cfg.explorer == "agents")
        run_baseline(lab)
        deadline = time.time() + cfg.budget.wall_clock_s if cfg.budget.wall_clock_s else 1e12
        if cfg.explorer == "sweep":  # a Ray Tune sweep explores instead of the agents
            refs = {explore_task.remote(lab, deadline): [cfg.sweep_agent]}
        else:
            refs = {a.run.remote(deadline): names for a, names in lab.agents}
        show = Progress(lab, t0, enabled=progress)
        pending = list(refs)
        stopped = None
        while pending:
            _, pending = ray.wait(pending, timeout=1.0)
            show.tick()
            if stopped is None and (stopped := over_budget(lab)):
                for actor, _ in lab.agents:  # each agent stops after its current step
                    actor.stop.remote()
        ray.get(lab.queue.drain.remote())
        run_controls(lab)
        show.tick(final=True)
        summary = summarise(lab, time.time() - t0)
        summary["stopped_by"] = stopped
        (campaign_dir / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
        return summary
    finally:
        if started:
            ray.shutdown()


def _interrupt(*_: Any) -> None:
    raise KeyboardInterrupt


def summarise(lab: Lab, seconds: float) -> dict[str, Any]:
    board = ray.get(lab.scorer.leaderboard.remote("private", 1000))
    trials = ray.get(lab.queue.list.remote(kind="agent"))
    posts = ray.get(lab.forum.all_posts.remote())
    baseline = next((e for e in board if e["agent"] == "baseline"), None)
    best = next((e for e in board if e["agent"] != "baseline"), None)
    agents = [s for a, _ in lab.agents for s in ray.get(a.summaries.remote())]
    return {
        "campaign_dir": str(lab.dir), "setting": lab.cfg.setting.label,
        "seconds": round(seconds, 1), "weak_acc": lab.prepared["weak_acc"],
        "ceiling_acc": lab.prepared["ceiling_acc"],
        "leaderboard": board, "baseline": baseline, "best": best,
        "best_beats_baseline": bool(best and baseline and baseline["se"] is not None
                                    and best["pgr"] > baseline["pgr"] + baseline["se"]),
        "trials": {s: sum(t["status"] == s for t in trials) for s in ("done", "error")},
        "posts_per_agent": {a["agent"]: sum(p["author"] == a["agent"] for p in posts)
                            for a in agents},
        "diversity": diversity(trials), "agents": agents,
    }


class Progress:
    """One status line: overwritten in place on a terminal, printed every 15 s in logs."""

    def __init__(self, lab: Lab, t0: float, enabled: bool = True) -> None:
        self.lab, self.t0, self.enabled = lab, t0, enabled
        self.tty = sys.stdout.isatty()
        self.last = 0.0

    def tick(self, final: bool = False) -> None:
        if not self.enabled or (not self.tty and not final and time.time() - self.last < 15):
            return
        self.last = time.time()
        c = ray.get(self.lab.queue.counts.remote("agent"))
        top = ray.get(self.lab.scorer.leaderboard.remote("public", 1))
        budget = self.lab.cfg.exploration_trials()
        best = f"{top[0]['pgr']:.2f} ({top[0]['agent']}, {top[0]['method']})" if top else "-"
        line = (f"[{time.time() - self.t0:6.0f}s] trials {c['done']}/{budget or '?'} done, "
                f"{c['running']} running, {c['queued']} queued, {c['error']} failed | "
                f"best public PGR {best}")
        if self.tty and not final:
            print("\r" + line[:160].ljust(160), end="", flush=True)
        else:
            print(("\n" if self.tty else "") + line, flush=True)


def format_leaderboard(summary: dict[str, Any], top: int = 10) -> str:
    """The private leaderboard: PGR ± SE over seeds, its 95% CI, the Holm-adjusted p-value
    against the lab's vanilla baseline, and integrity flags. A sweep's entries say so in
    their agent id (sweep-optuna, sweep-random)."""
    rows = [f"{'#':>2} {'method':<18} {'agent':<12} {'PGR':>7} {'± SE':>6} {'95% CI':>16} "
            f"{'p(Holm)':>8} seeds  flags / params"]
    for i, e in enumerate(summary["leaderboard"][:top], 1):
        se = "" if e["se"] is None else f"{e['se']:.3f}"
        ci = "" if e.get("ci_lo") is None else f"[{e['ci_lo']:.2f}, {e['ci_hi']:.2f}]"
        p = "" if e.get("p_holm") is None else f"{e['p_holm']:.3f}"
        flags = [f["kind"] for f in e["flags"] if f.get("ignores_teacher", True)]
        rows.append(f"{i:>2} {e['method'][:18]:<18} {e['agent']:<12} {e['pgr']:>7.3f} {se:>6} "
                    f"{ci:>16} {p:>8} {len(e['seeds']):>5}  "
                    f"{' '.join('⚑' + f for f in flags)} {json.dumps(e['params'])}")
    b = summary["baseline"]
    if b:
        rows.append(f"baseline vanilla: PGR {b['pgr']:.3f} ± {b['se'] or 0:.3f}")
    return "\n".join(rows)
