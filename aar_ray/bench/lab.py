"""Bench: the lab at scale on this machine.

- 100 offline agents in one campaign on the embedded Ray, packed 50 per actor process;
- 1,000 offline agents on the simulated multi-node cluster (a head and two workers on
  127.0.0.1, `aar_ray.testing.cluster`), packed 100 per actor process, placed by the config;
- a second `aar run` of the default config (warm caches): seconds to its first trial.

Memory is the PSS of every process of the campaign's Ray cluster (this process's descendants:
shared pages count once, and no other Ray on the machine is counted), peak over the run, and
of the agents' actor processes alone; what one more agent costs is the slope of the latter
between the two fleets. Forum latency is `read_forum` (and `post`) as the agents saw it, from
their tool logs. Numbers go to bench/results.json under `lab`.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from aar_ray.bench import merge_results
from aar_ray.config import BudgetConfig, CampaignConfig, SettingConfig, load_campaign, save_campaign
from aar_ray.lab.campaign import run_campaign
from aar_ray.results import records

DEFAULT_CONFIG = Path(__file__).resolve().parents[2] / "jobs" / "configs" / "embedded.yaml"


def _descendants() -> list[int]:
    children: dict[int, list[int]] = {}
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                ppid = int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(proc.name))
    out, todo = [], list(children.get(os.getpid(), []))
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo += children.get(pid, [])
    return out


def cluster_pss_mib() -> tuple[float, float]:
    """(PSS of every process this one started, of those hosting agents) in MiB."""
    total = agents = 0
    for pid in _descendants():
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
            rollup = Path(f"/proc/{pid}/smaps_rollup").read_text()
        except OSError:
            continue
        kib = next((int(line.split()[1]) for line in rollup.splitlines()
                    if line.startswith("Pss:")), 0)
        total += kib
        agents += kib if b"ResearcherActor" in cmd else 0
    return total / 1024, agents / 1024


def _fleet(agents: int, per_actor: int, root: str, on_cluster: bool = False) -> dict:
    cfg = CampaignConfig(
        name=f"fleet{agents}", agents=agents, seeds=[0], root=root,
        setting=SettingConfig(task="tweets", weak="glove50", strong="minilm_l1",
                              max_examples=800, test_size=200),
        budget=BudgetConfig(trials_per_agent=2, steps_per_agent=20, wall_clock_s=900))
    cfg.resources.agents_per_actor = per_actor
    cfg.scoring.control_top_k = 0
    cfg.confirm.top_k, cfg.confirm.seeds = 1, [100, 101]
    if on_cluster:
        from aar_ray.testing.cluster import place_on_cluster

        place_on_cluster(cfg.resources)
    peak = [0.0, 0.0]
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(2.0):
            peak[:] = np.maximum(peak, cluster_pss_mib()).tolist()

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    t0 = time.time()
    try:
        summary = run_campaign(cfg, progress=False)
    finally:
        stop.set()
        sampler.join()
    lat: dict[str, list[float]] = {"post": [], "read_forum": []}
    for f in Path(summary["campaign_dir"]).glob("agents/*/tool_calls.jsonl"):
        for line in f.read_text().splitlines():
            e = json.loads(line)
            if e["tool"] in lat and not e.get("error"):
                lat[e["tool"]].append(e["s"] * 1000)
    row = {"agents": agents, "agents per actor": per_actor,
           "actor processes": -(-agents // per_actor), "wall s": time.time() - t0,
           "peak cluster PSS MiB": peak[0], "peak agent-process PSS MiB": peak[1],
           "trials done": summary["trials"]["done"],
           "agents finished": sum(a["finished"] for a in summary["agents"])}
    for tool, xs in lat.items():
        row[f"{tool} calls"] = len(xs)
        row[f"{tool} p50 ms"] = float(np.percentile(xs, 50)) if xs else None
        row[f"{tool} p99 ms"] = float(np.percentile(xs, 99)) if xs else None
    return row


def _fleet_on_cluster(agents: int, per_actor: int, root: str) -> dict:
    import ray

    from aar_ray.lab import NAMESPACE
    from aar_ray.testing.cluster import local_cluster

    with local_cluster(workers=2) as cluster:
        ray.init(address=cluster.address, namespace=NAMESPACE, log_to_driver=False)
        row = _fleet(agents, per_actor, root, on_cluster=True)
        row["nodes"] = len([n for n in ray.nodes() if n["Alive"]])
    return row


def first_trial_s(root: str, timeout_s: float = 1800) -> dict:
    """`aar run` of the default config as `make run` starts it: seconds from the command to
    the lab being up (its baseline trial queued) and to the first trial running, and the
    ERROR and WARNING lines it printed by then; then it is stopped (SIGTERM: a clean stop)."""
    cfg = load_campaign(DEFAULT_CONFIG)
    cfg.root = root
    path = Path(root) / "embedded.yaml"
    save_campaign(cfg, path)
    before = set(Path(root).glob("embedded-*"))
    log = Path(root) / f"aar-run-{len(before)}.log"
    t0 = time.time()
    with open(log, "w") as f:
        proc = subprocess.Popen([sys.executable, "-m", "aar_ray.cli", "run", "--no-progress",
                                 "--config", str(path)], stdout=f, stderr=subprocess.STDOUT,
                                env={**os.environ, "RAY_AUTH_MODE": "disabled"})
    out: dict = {}
    try:
        while time.time() - t0 < timeout_s and proc.poll() is None:
            time.sleep(0.5)
            dirs = sorted(set(Path(root).glob("embedded-*")) - before)
            trials = records.queued_trials(dirs[0]) if dirs else []
            created = min((t["created"] for t in trials if t["created"]), default=None)
            started = min((t["started"] for t in trials if t["started"]), default=None)
            if started:
                lines = [x for x in log.read_text().splitlines() if "ERROR" in x or "WARN" in x]
                print(*(f"aar run: {x[:300]}" for x in lines), sep="\n", flush=True)
                out = {"lab up s": created - t0, "first trial s": started - t0,
                       "ERROR lines": sum("ERROR" in x for x in lines),
                       "WARNING lines": len(lines) - sum("ERROR" in x for x in lines)}
                break
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=120)
        except subprocess.TimeoutExpired:
            proc.kill()
    return out


def run() -> tuple[str, list[dict]]:
    with tempfile.TemporaryDirectory() as root:
        cold = first_trial_s(root)  # fills the caches if this machine's are cold
        warm = first_trial_s(root)
        small = _fleet(100, 50, root)
        large = _fleet_on_cluster(1000, 100, root)
    slope = (large["peak agent-process PSS MiB"] - small["peak agent-process PSS MiB"]) / 900
    merge_results("lab", {
        "agents_100": {"pss_mib": round(small["peak cluster PSS MiB"], 1),
                       "read_forum_p99_ms": round(small["read_forum p99 ms"], 1)},
        "agents_1000": {"pss_mib": round(large["peak cluster PSS MiB"], 1),
                        "read_forum_p99_ms": round(large["read_forum p99 ms"], 1),
                        "nodes": large["nodes"], "trials_done": large["trials done"]},
        "agent_marginal_pss_mib": round(slope, 2),
        "warm_first_trial_s": round(warm["first trial s"], 1),
        "load_average_1m": os.getloadavg()[0]})  # 2 cores shared: contention matters
    rows = [{"run": "default config, first", **cold}, {"run": "default config, warm", **warm},
            {"run": "100 agents, embedded", **small},
            {"run": "1,000 agents, 3-node cluster", **large},
            {"run": "one more agent", "PSS MiB": slope}]
    return "Lab at scale: start-up, fleets of offline agents (2 cores)", rows
