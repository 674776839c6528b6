"""Bench: the lab at scale on this machine.

- 100 offline agents in one campaign on the embedded Ray, packed 50 per actor process, two
  trials each;
- 1,000 offline agents on the simulated multi-node cluster (a head and two workers on
  127.0.0.1, `aar_ray.testing.cluster`), packed 100 per actor process, placed by the config,
  one trial each (the fleet's 1,000 trials share two CPUs: the run takes minutes, not an hour).

Start-up time (`lab.warm_first_trial_s`) is the `startup` suite's.

Memory is the PSS of every process of the campaign's Ray cluster (this process's descendants:
shared pages count once, and no other Ray on the machine is counted), peak over the run, and
of the agents' actor processes alone; what one more agent costs is the slope of the latter
between the two fleets. Forum latency is `post` as the agents saw it, from their tool logs, and
`read_forum` as a reader sees it all through the run (the offline brains read too rarely for a
p99; their own reads are counted with it). Numbers go to bench/results.json under `lab`.
"""
from __future__ import annotations

import json
import os
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import ray
from ray.exceptions import RayError

from aar_ray.bench import merge_results
from aar_ray.config import BudgetConfig, CampaignConfig, SettingConfig
from aar_ray.lab import NAMESPACE
from aar_ray.lab.campaign import run_campaign


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


def _fleet(agents: int, per_actor: int, root: str, trials: int, on_cluster: bool = False) -> dict:
    cfg = CampaignConfig(
        name=f"fleet{agents}", agents=agents, seeds=[0], root=root,
        setting=SettingConfig(task="tweets", weak="glove50", strong="minilm_l1",
                              max_examples=800, test_size=200),
        budget=BudgetConfig(trials_per_agent=trials, steps_per_agent=20, wall_clock_s=900))
    cfg.resources.agents_per_actor = per_actor
    cfg.scoring.control_top_k = 0
    cfg.confirm.top_k, cfg.confirm.seeds = 1, [100, 101]
    if on_cluster:
        from aar_ray.testing.cluster import place_on_cluster

        place_on_cluster(cfg.resources)
    peak = [0.0, 0.0]
    probed: list[float] = []
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(2.0):
            peak[:] = np.maximum(peak, cluster_pss_mib()).tolist()

    def probe() -> None:
        """The offline brains read the forum only when they exploit (a few calls a run), too
        few for a p99: a reader makes the two calls they make, 4 per second, all run long."""
        forum, i = None, 0
        while not stop.wait(0.25):
            if not ray.is_initialized():  # the embedded Ray starts inside run_campaign
                continue
            try:
                forum = forum or ray.get_actor("forum", namespace=NAMESPACE)
                args = ("", "replicated", "top", 10) if i % 2 else ("", "", "newest", 10)
                t, i = time.perf_counter(), i + 1
                ray.get(forum.read.remote(*args))
                probed.append((time.perf_counter() - t) * 1000)
            except (ValueError, RayError):  # the lab is not up yet, or already shut down
                continue

    threads = [threading.Thread(target=sample, daemon=True),
               threading.Thread(target=probe, daemon=True)]
    for t in threads:
        t.start()
    t0 = time.time()
    try:
        summary = run_campaign(cfg, progress=False)
    finally:
        stop.set()
        for t in threads:
            t.join()
    lat: dict[str, list[float]] = {"post": [], "read_forum": probed}
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


def _fleet_on_cluster(agents: int, per_actor: int, root: str, trials: int) -> dict:
    from aar_ray.testing.cluster import local_cluster

    with local_cluster(workers=2) as cluster:
        ray.init(address=cluster.address, namespace=NAMESPACE, log_to_driver=False)
        row = _fleet(agents, per_actor, root, trials, on_cluster=True)
        row["nodes"] = len([n for n in ray.nodes() if n["Alive"]])
    return row


def run() -> tuple[str, list[dict]]:
    with tempfile.TemporaryDirectory() as root:
        small = _fleet(100, 50, root, trials=2)
        large = _fleet_on_cluster(1000, 100, root, trials=1)
    slope = (large["peak agent-process PSS MiB"] - small["peak agent-process PSS MiB"]) / 900
    merge_results("lab", {
        "agents_100": {"pss_mib": round(small["peak cluster PSS MiB"], 1),
                       "post_p99_ms": round(small["post p99 ms"], 1),
                       "read_forum_p99_ms": round(small["read_forum p99 ms"], 1)},
        "agents_1000": {"pss_mib": round(large["peak cluster PSS MiB"], 1),
                        "post_p99_ms": round(large["post p99 ms"], 1),
                        "read_forum_p99_ms": round(large["read_forum p99 ms"], 1),
                        "nodes": large["nodes"], "trials_done": large["trials done"]},
        "agent_marginal_pss_mib": round(slope, 2),
        "load_average_1m": os.getloadavg()[0]})  # 2 cores shared: contention matters
    rows = [{"run": "100 agents, embedded", **small},
            {"run": "1,000 agents, 3-node cluster", **large},
            {"run": "one more agent", "PSS MiB": slope}]
    return "Lab at scale: fleets of offline agents (2 cores)", rows
