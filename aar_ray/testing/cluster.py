"""Ray clusters on one machine, every node on 127.0.0.1, for tests, benchmarks and the doc
recipes:

- `loopback_head`: `ray start --head --block` with free ports and its own temp dir, as a user
  starts one (the dashboard, the Jobs API, the metrics port); `python -m aar_ray.testing.cluster`
  runs one and prints its addresses as shell variables (docs/operations.md).
- `local_cluster`: Ray's own `ray.cluster_utils.Cluster`, a head and worker nodes (each its own
  raylet and object store) offering the custom resources that the placement keys of
  `resources:` ask for, exactly as the nodes of a real cluster would (docs/scale.md).

Neither ever runs `ray stop`: it kills every cluster on the machine.
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from aar_ray.config import ResourcesConfig
from aar_ray.connect import AUTH_ENV, LOOPBACK, LOOPBACK_ENV, auth_mode, pin_loopback
from aar_ray.lab.placement import free_port

RAY_BIN = Path(sys.executable).parent
PORTS = ("gcs", "dashboard", "metrics", "client", "agent_http", "agent_grpc", "runtime_env")

HEAD, WORKER = "aar_head", "aar_worker"
# a node killed without warning is declared dead after about 3 s instead of Ray's 30 s
FAST_FAILURE_DETECTION = {"health_check_period_ms": 1000, "health_check_timeout_ms": 1000,
                          "health_check_failure_threshold": 3}


def place_on_cluster(res: ResourcesConfig) -> None:
    """The placement a cluster made by `local_cluster` is for: the scorer, forum and queue on
    the head, agents and trials spread over the workers."""
    res.head_resources = {HEAD: 0.001}
    res.agent_resources = {WORKER: 0.001}
    res.trial_resources = {WORKER: 0.001}
    res.spread = True


@contextmanager
def local_cluster(workers: int = 2, cpus_per_worker: float = 1, head_cpus: float = 0,
                  object_store_mb: int = 200) -> Iterator:
    """A head (no CPUs by default: only the lab's zero-CPU actors live there) and `workers`
    worker nodes; yields the `Cluster` (its `.address` for `ray.init`, `remove_node` to lose a
    node). Everything it started is stopped on exit; never `ray stop`."""
    pin_loopback()
    auth_mode(embedded=True)  # its nodes and every driver of it read the same mode
    from ray.cluster_utils import Cluster

    temp = Path("/tmp") / f"aar-mn-{os.getpid()}"  # short: Ray's socket paths have a limit
    cluster = Cluster(initialize_head=True, head_node_args={
        "node_ip_address": LOOPBACK, "num_cpus": head_cpus, "resources": {HEAD: 1},
        "include_dashboard": False, "temp_dir": str(temp),
        "object_store_memory": object_store_mb << 20, "_system_config": FAST_FAILURE_DETECTION})
    try:
        for _ in range(workers):
            cluster.add_node(node_ip_address=LOOPBACK, num_cpus=cpus_per_worker,
                             resources={WORKER: 1}, object_store_memory=object_store_mb << 20)
        cluster.wait_for_nodes()
        yield cluster
    finally:
        import ray

        if ray.is_initialized():
            ray.shutdown()
        cluster.shutdown()
        shutil.rmtree(temp, ignore_errors=True)


def _up(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            return r.status == 200
    except OSError:
        return False


@contextmanager
def loopback_head(num_cpus: int = 2, timeout_s: float = 90) -> Iterator[dict]:
    """`ray start --head --block` on 127.0.0.1, in its own process group; yields `address` (the
    dashboard: Jobs API), `gcs` (ray.init / RAY_ADDRESS), `env` (for `ray` commands), `metrics`
    (the export port) and `log`. Every port explicit: a default one (e.g. the agent's 52365)
    may be held by another Ray here, and job submission then fails with "No available agent".

    Stopping: SIGTERM to `ray start` alone, which drains the node and stops what it started
    (about 2 s; signalling the whole group kills the GCS first and the drain then waits 30 s),
    then SIGKILL to anything left in the group."""
    ports = {k: free_port() for k in PORTS}
    # one auth mode for the node and its `ray` commands; metrics every 1 s instead of 10 s
    env = {**os.environ, **LOOPBACK_ENV, AUTH_ENV: auth_mode(embedded=False),
           "RAY_metrics_report_interval_ms": "1000", "PATH": f"{RAY_BIN}:{os.environ['PATH']}"}
    temp = Path("/tmp") / f"aar-ray-{os.getpid()}-{ports['gcs']}"  # short: socket path limit
    head = subprocess.Popen(
        [str(RAY_BIN / "ray"), "start", "--head", "--block", f"--node-ip-address={LOOPBACK}",
         f"--port={ports['gcs']}", f"--dashboard-port={ports['dashboard']}",
         f"--dashboard-host={LOOPBACK}", f"--metrics-export-port={ports['metrics']}",
         f"--ray-client-server-port={ports['client']}",
         f"--dashboard-agent-listen-port={ports['agent_http']}",
         f"--dashboard-agent-grpc-port={ports['agent_grpc']}",
         f"--runtime-env-agent-port={ports['runtime_env']}", f"--num-cpus={num_cpus}",
         f"--temp-dir={temp}", "--disable-usage-stats"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True)
    log: list[str] = []

    def drain() -> None:  # read continuously, so a full pipe never blocks `ray start`
        for line in head.stdout or ():
            log.append(line)

    threading.Thread(target=drain, daemon=True).start()
    address = f"http://{LOOPBACK}:{ports['dashboard']}"
    agent = f"http://{LOOPBACK}:{ports['agent_http']}/api/local_raylet_healthz"
    deadline = time.time() + timeout_s
    try:
        while not (any("Ray runtime started" in line for line in log)
                   and _up(f"{address}/api/gcs_healthz") and _up(agent)):
            if time.time() > deadline or head.poll() is not None:
                raise RuntimeError("ray head did not come up: " + "".join(log)[-2000:])
            time.sleep(0.3)  # the head's agent registers after its HTTP server; jobs need it
        yield {"address": address, "env": env, "gcs": f"{LOOPBACK}:{ports['gcs']}",
               "metrics": ports["metrics"], "log": log}
    finally:
        head.terminate()
        try:
            head.wait(timeout=40)
        except subprocess.TimeoutExpired:
            pass
        try:
            os.killpg(head.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        shutil.rmtree(temp, ignore_errors=True)  # session logs and sockets (tens of MB)


if __name__ == "__main__":  # the doc recipe's cluster: addresses as shell lines, then wait
    with loopback_head() as c:
        pins = " ".join(f"{k}={v}" for k, v in LOOPBACK_ENV.items())
        print(f"export RAY_API_SERVER_ADDRESS={c['address']} AAR_GCS={c['gcs']} "
              f"{AUTH_ENV}={c['env'][AUTH_ENV]} {pins}", flush=True)
        try:
            signal.sigwait({signal.SIGINT, signal.SIGTERM})
        except KeyboardInterrupt:
            pass
