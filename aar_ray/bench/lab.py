"""Bench: a fleet of 100 offline agents in one campaign on this machine: memory of the whole
Ray cluster (PSS, so shared pages count once) and forum latency (p50/p99 of post and read, as
the agents saw them), with agents packed 10 per actor process; and 20 agents with one actor
process each against the same 20 packed, to show what packing saves."""
from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import numpy as np

from aar_ray.config import BudgetConfig, CampaignConfig, ResourcesConfig, SettingConfig
from aar_ray.lab.campaign import run_campaign


def _pss_mb() -> float:
    """Summed PSS of every Ray process on the machine (ours is the only cluster in a bench)."""
    total = 0
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmd = (proc / "cmdline").read_bytes().replace(b"\0", b" ")
            if b"ray" not in cmd:
                continue
            for line in (proc / "smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    total += int(line.split()[1])
        except OSError:
            continue
    return total / 1024


def _campaign(agents: int, per_actor: int, root: str) -> dict:
    cfg = CampaignConfig(
        name=f"fleet{agents}x{per_actor}", agents=agents, seeds=[0],
        setting=SettingConfig(task="tweets", weak="glove50", strong="minilm_l1",
                              max_examples=800, test_size=200),
        budget=BudgetConfig(trials_per_agent=1, steps_per_agent=20, wall_clock_s=900),
        resources=ResourcesConfig(agents_per_actor=per_actor), root=root)
    cfg.scoring.control_top_k = 0
    peak = [0.0]
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(2.0):
            peak[0] = max(peak[0], _pss_mb())

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
           "peak cluster PSS MiB": peak[0],
           "trials done": summary["trials"]["done"]}
    for tool, xs in lat.items():
        row[f"{tool} p50 ms"] = float(np.percentile(xs, 50)) if xs else None
        row[f"{tool} p99 ms"] = float(np.percentile(xs, 99)) if xs else None
    return row


def run() -> tuple[str, list[dict]]:
    import tempfile

    with tempfile.TemporaryDirectory() as root:
        # one process per agent thrashes 2 cores long before 100 agents: compare at 20
        rows = [_campaign(100, 10, root), _campaign(20, 1, root), _campaign(20, 10, root)]
    for r in rows:
        r["PSS per agent MiB"] = r["peak cluster PSS MiB"] / r["agents"]
    return "Lab: fleets of offline agents in one campaign (2 cores)", rows
