"""Bench: start-up. `aar run` of the default config (jobs/configs/embedded.yaml) as `make run`
starts it, twice: the first run fills this machine's caches if they are cold, the second
(warm caches) is the one the target is about: seconds from the command to its first trial
running (`lab.warm_first_trial_s` in bench/results.json), and the ERROR and WARNING lines
printed by then. Each run is stopped at its first trial (SIGTERM: a clean stop)."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from aar_ray.bench import merge_results
from aar_ray.config import load_campaign, save_campaign
from aar_ray.connect import AUTH_ENV, auth_mode
from aar_ray.results import records

DEFAULT_CONFIG = Path(__file__).resolve().parents[2] / "jobs" / "configs" / "embedded.yaml"


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
                                env={**os.environ, AUTH_ENV: auth_mode(embedded=True)})
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
        cold = first_trial_s(root)
        warm = first_trial_s(root)
    merge_results("lab", {"warm_first_trial_s": round(warm["first trial s"], 1),
                          "startup_load_average_1m": os.getloadavg()[0]})
    return ("Start-up of the default `aar run` (target: first trial ≤ 30 s with warm caches)",
            [{"run": "first", **cold}, {"run": "warm caches", **warm}])
