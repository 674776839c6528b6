"""A campaign: start (or resume) the lab on Ray, let the agents research until their budgets
end, and write the leaderboard. Everything lives in one campaign directory:

    config.yaml  scorer.sqlite  forum.sqlite  trials.sqlite  operations.jsonl  explored.json
    summary.json
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

from aar_ray import connect, train
from aar_ray.brains import require_key
from aar_ray.brains.base import total_tokens
from aar_ray.config import CampaignConfig, ConfigError, load_campaign, save_campaign
from aar_ray.lab import NAMESPACE, confirmation, placement, startup
from aar_ray.lab.actors import ForumActor, ScorerActor, TrialQueueActor, create
from aar_ray.lab.agent import ResearcherActor
from aar_ray.lab.directions import DIRECTIONS
from aar_ray.lab.store import checkpoint, require_space
from aar_ray.observe import operations, tracking
from aar_ray.results import records, stats, verdict
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
    address = connect.resolve(None)  # RAY_ADDRESS, else embedded
    if address.kind == "dashboard":
        raise ConfigError(f"RAY_ADDRESS={address.value} is the dashboard (Jobs API): submit "
                          f"the campaign with `ray job submit --address {address.value} "
                          "--working-dir . -- python jobs/campaign.py --config CONFIG`, or give "
                          "the GCS address (HEAD:6379) or ray://HEAD:10001")
    env = {k: os.environ[k] for k in FORWARDED_ENV if k in os.environ}
    env.setdefault("WANDB_MODE", cfg.wandb.mode)
    env[connect.AUTH_ENV] = connect.auth_mode(embedded=address.kind == "local")
    runtime_env = {"env_vars": env}
    with without_secrets():
        if address.kind == "local":
            placement.start_embedded(cfg, NAMESPACE, runtime_env)
        else:
            connect.join(address, namespace=NAMESPACE, runtime_env=runtime_env,
                         log_to_driver=False)
    return True


EXPLORED = "explored.json"  # written when exploration ends: a resume goes on to what follows
LONG_CAMPAIGN_S = 3600  # exploration this long (or any Claude campaign) must keep its records


def check_root_outlives_job(cfg: CampaignConfig, cwd: Path | None = None) -> None:
    """Refuse a long campaign whose `root` lies inside a Ray job's unpacked working directory
    (`.../runtime_resources/working_dir_files/...`): that directory, and on KubeRay the whole
    head pod, is deleted after the job, taking the SQLite records, W&B runs and report along."""
    cwd = (cwd or Path.cwd()).resolve()
    root = (cwd / cfg.root).resolve()
    long = cfg.brain == "claude" or cfg.budget.wall_clock_s >= LONG_CAMPAIGN_S
    if long and "runtime_resources" in cwd.parts and root.is_relative_to(cwd):
        raise ConfigError(f"root: {cfg.root!r} is inside the job's working directory ({cwd}), "
                          "which is deleted with the job: give root (or --root) on shared "
                          "storage, e.g. /mnt/cluster_storage/aar/campaigns")


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
    """The lab's actors, in this order: scorer, forum, trial queue, researchers."""
    train.install()  # every lab process fine-tunes on Ray Train: this driver's installed here,
    # the scorer's and the trial workers' where they start (actors.py, trials.py)
    d = str(campaign_dir)
    head = placement.head(cfg)
    scorer = create("scorer", ScorerActor, d, cfg, num_gpus=cfg.resources.scorer_gpus, **head)
    forum = create("forum", ForumActor, d, **head)
    queue = create("trials", TrialQueueActor, d, cfg, secrets("WANDB_API_KEY"), **head)
    specs = [(f"agent-{i}", direction, i) for i, direction in enumerate(directions(cfg))
             if with_agents]
    k = cfg.resources.agents_per_actor
    agents = []
    for j in range(0, len(specs), k):
        group = specs[j:j + k]
        name = group[0][0] if k == 1 else f"agents-{j}-{j + len(group) - 1}"
        agents.append((create(name, ResearcherActor, group, d, cfg, secrets("ANTHROPIC_API_KEY"),
                              **placement.agents(cfg)), [g[0] for g in group]))
    # the other actors' processes start while the scorer prepares (a progress bar while it
    # embeds); they reach the scorer only once the campaign runs
    prepared = startup.prepare(scorer)
    if (warning := gap_warning(cfg, prepared)) is not None:
        print(warning, file=sys.stderr, flush=True)
    return Lab(cfg, campaign_dir, scorer, forum, queue, agents, prepared)


def gap_warning(cfg: CampaignConfig, prepared: dict[str, Any]) -> str | None:
    """A line before agents start when the measured gap (ceiling − teacher accuracy) is below
    `scoring.min_gap`: PGR divides by that gap, so its CIs grow as it shrinks."""
    gap = prepared["ceiling_acc"] - prepared["weak_acc"]
    if gap >= cfg.scoring.min_gap:
        return None
    return (f"aar: warning: {cfg.setting.label}: the ceiling beats the teacher by only "
            f"{100 * gap:.1f} points (scoring.min_gap: {100 * cfg.scoring.min_gap:g}); PGR "
            "divides by this gap, so expect very wide confidence intervals")


def run_baseline(lab: Lab) -> None:
    """The lab's own vanilla trial on every seed: the bar each method is compared with."""
    trials = ray.get(lab.queue.list.remote(agent="baseline"))
    tid = trials[0]["trial_id"] if trials else ray.get(lab.queue.enqueue.remote(
        "baseline", "vanilla", {}, list(lab.cfg.seeds), "baseline"))["trial_id"]
    status = ray.get(lab.queue.status.remote(tid, "baseline", 600))
    if status["status"] == "done":
        ray.get(lab.scorer.submit.remote(tid, "baseline"))


def over_budget(lab: Lab) -> str | None:
    """Which campaign-wide Claude budget was spent, if any. The campaign does not pre-empt
    agents: each brain stops at its equal share of the total (`brains.agent_budget`), so the
    fleet overshoots by at most one step per agent, and no agent loses its share because
    others overshot theirs."""
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
    assert cfg is not None
    require_key(cfg)  # the key, the root and the address: checked before anything starts
    if not resume:
        check_root_outlives_job(cfg)
    started = init_ray(cfg)
    if not resume:
        campaign_dir = new_campaign_dir(cfg)
        save_campaign(cfg, campaign_dir / "config.yaml")
    if threading.current_thread() is threading.main_thread():
        # after ray.init, whose own SIGTERM handler aborts: a stopped campaign shuts Ray down
        # cleanly instead, and `aar run --resume DIR` continues it
        signal.signal(signal.SIGTERM, _interrupt)
    if resume:
        operations.record(campaign_dir, "campaign_resumed")
    explored = records.json_file(campaign_dir / EXPLORED)
    try:
        lab = start_lab(cfg, campaign_dir, with_agents=cfg.explorer == "agents")
        run_baseline(lab)
        deadline = time.time() + cfg.budget.wall_clock_s if cfg.budget.wall_clock_s else 1e12
        if explored is not None:  # a resume after exploration ended: not a fresh wall clock
            deadline = 0
        if cfg.explorer == "sweep":  # a Ray Tune sweep explores instead of the agents
            from aar_ray.lab.sweep import explore_task  # Ray Tune: 2-9 s to import

            refs = {explore_task.remote(lab, deadline): [cfg.sweep_agent]}
        else:
            refs = {a.run.remote(deadline): names for a, names in lab.agents}
        show = Progress(lab, t0, enabled=progress)
        pending = list(refs)
        while pending:
            _, pending = ray.wait(pending, timeout=1.0)
            show.tick()
            require_space(campaign_dir)
        if cfg.explorer == "sweep":
            ray.get(list(refs))  # a crashed sweep must fail loudly, not end with 0 trials
        stopped = over_budget(lab)  # a sweep has no agents: nothing spent, None
        if stopped is None and time.time() >= deadline:
            stopped = f"wall-clock budget ({cfg.budget.wall_clock_s:g} s of exploration)"
        if explored is None:
            (campaign_dir / ".explored.tmp").write_text(json.dumps({"stopped_by": stopped}))
            os.replace(campaign_dir / ".explored.tmp", campaign_dir / EXPLORED)  # whole or none
        stopped = (explored or {}).get("stopped_by", stopped)
        ray.get(lab.queue.drain.remote())
        run_controls(lab)
        show.tick(final=True)
        if progress:
            print("confirmation: pre-registered top configurations on fresh seeds, then the "
                  "transfer audit", flush=True)
        end = confirmation.run(lab)
        summary = {**summarise(lab, time.time() - t0), **end, "stopped_by": stopped}
        (campaign_dir / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
        tracking.log_verdict(campaign_dir.name, str(campaign_dir), cfg, summary)
        return summary
    except KeyboardInterrupt:
        operations.record(campaign_dir, "campaign_interrupted")
        raise
    finally:
        if started:
            ray.shutdown()
        checkpoint(campaign_dir)


def _interrupt(*_: Any) -> None:
    raise KeyboardInterrupt


def summarise(lab: Lab, seconds: float) -> dict[str, Any]:
    """The exploration's board and health: public→private Spearman over the explored
    configurations, the largest share of trials spent on one method."""
    board = ray.get(lab.scorer.leaderboard.remote("private", 1000))
    trials = ray.get(lab.queue.list.remote(kind="agent"))
    explored = [c for c in ray.get(lab.scorer.explored.remote())
                if c["public_delta"] is not None and c["private_delta"] is not None]
    methods = [t["method"] for t in trials]
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
        "diversity": diversity(trials, ray.get(lab.queue.method_catalog.remote())),
        "agents": agents,
        "explored_configurations": len(explored),
        "public_private_spearman": stats.spearman([c["public_delta"] for c in explored],
                                                  [c["private_delta"] for c in explored]),
        "max_method_share": max(methods.count(m) for m in set(methods)) / len(methods)
        if methods else None,
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
        best = f"{top[0]['delta']:+.2f} ({top[0]['agent']}, {top[0]['method']})" if top else "-"
        line = (f"[{time.time() - self.t0:6.0f}s] trials {c['done']}/{budget or '?'} done, "
                f"{c['running']} running, {c['queued']} queued, {c['error']} failed | "
                f"best public ΔPGR {best}")
        if self.tty and not final:
            print("\r" + line[:160].ljust(160), end="", flush=True)
        else:
            print(("\n" if self.tty else "") + line, flush=True)


def format_leaderboard(summary: dict[str, Any], top: int = 10) -> str:
    """The exploration's private leaderboard: pooled PGR with its seed x item SE and 95% CI,
    ΔPGR over vanilla (same seeds and items) with its CI and unadjusted p, integrity flags. A
    sweep's entries say so in their agent id (sweep-optuna, sweep-random). Exploratory:
    the verdict comes from the confirmation stage (`format_verdict`)."""
    rows = [f"{'#':>2} {'method':<18} {'agent':<12} {'PGR':>6} {'± SE':>6} {'95% CI':>14} "
            f"{'ΔPGR':>7} {'Δ 95% CI':>16} {'p':>6} seeds  flags / params"]
    for i, e in enumerate(summary["leaderboard"][:top], 1):
        se = "" if e["se"] is None else f"{e['se']:.3f}"
        ci = "" if e.get("ci_lo") is None else f"[{e['ci_lo']:.2f}, {e['ci_hi']:.2f}]"
        d = "" if e.get("delta") is None else f"{e['delta']:+.3f}"
        dci = "" if e.get("delta_lo") is None else f"[{e['delta_lo']:+.3f}, {e['delta_hi']:+.3f}]"
        p = "" if e.get("p") is None else f"{e['p']:.3f}"
        flags = [f["kind"] for f in e["flags"] if f.get("ignores_teacher", True)]
        rows.append(f"{i:>2} {e['method'][:18]:<18} {e['agent'][:12]:<12} {e['pgr']:>6.3f} "
                    f"{se:>6} {ci:>14} {d:>7} {dci:>16} {p:>6} {len(e['seeds']):>5}  "
                    f"{' '.join('⚑' + f for f in flags)} {json.dumps(e['params'])}")
    b = summary["baseline"]
    if b:
        rows.append(f"baseline vanilla: PGR {b['pgr']:.3f} ± {b['se'] or 0:.3f} "
                    f"(seed x item SE, {len(b['seeds'])} seeds)")
    return "\n".join(rows)


def format_verdict(summary: dict[str, Any]) -> str:
    """What is real: the pre-registered confirmation on fresh seeds, the audit, the health of
    the exploration, and the verdict sentence."""
    rows = ["confirmation (pre-registered; fresh seeds; private split; Holm over "
            f"{len(summary['candidates'])}):"]
    for c in summary["candidates"]:
        d = "n/a" if c["delta"] is None else (
            f"ΔPGR {c['delta']:+.3f} [{c['ci_low']:+.3f}, {c['ci_high']:+.3f}] "
            f"p(Holm) {c['p_holm']:.3g}")
        pgr = "n/a" if c["pgr"] is None else f"{c['pgr']:.3f}"
        rows.append(f"  {c['name']} {c['method'][:24]:<24} PGR {pgr}  {d}  "
                    f"{'CONFIRMED' if c['confirmed'] else 'not confirmed'}  "
                    + ("" if c["public_delta"] is None else
                       f"(public ΔPGR {c['public_delta']:+.3f}) ") + json.dumps(c["params"]))
    rows += [verdict.audit_line(c) for c in summary["confirmed"]]
    share, rho = (("n/a" if x is None else f"{x:.2f}") for x in (
        summary["max_method_share"], summary["public_private_spearman"]))
    rows.append(f"exploration: {summary['explored_configurations']} configurations; "
                f"public→private Spearman {rho}; largest share of trials on one method {share}")
    rows.append("verdict: " + summary["verdict"])
    return "\n".join(rows)
