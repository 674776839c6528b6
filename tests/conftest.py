"""Shared fixtures: one feature/teacher cache per test session and small W2S settings."""
from __future__ import annotations

import os

import pytest

# one auth mode for every driver: a stray ~/.ray/auth_token would switch Ray to token auth
os.environ["RAY_AUTH_MODE"] = "disabled"
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")
# every Ray node a test starts (embedded, `ray start`, multi-node) keeps 127.0.0.1: set before
# anything imports ray, which reads the flag once (aar_ray/lab/placement.py)
from aar_ray.lab.placement import LOOPBACK_ENV  # noqa: E402

os.environ.update(LOOPBACK_ENV)

from aar_ray.config import SettingConfig, StudentConfig  # noqa: E402


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory):
    """Features, teachers and ceilings shared by every test (embedding is the slow part).
    AAR_TEST_CACHE reuses one across runs when iterating locally."""
    return os.environ.get("AAR_TEST_CACHE") or str(tmp_path_factory.mktemp("aar-cache"))


@pytest.fixture(scope="module")
def local_ray():
    """An embedded Ray for one test module (loopback, no dashboard), in the lab's namespace."""
    import ray

    from aar_ray.lab import NAMESPACE

    ray.init(address="local", num_cpus=2, include_dashboard=False, namespace=NAMESPACE,
             log_to_driver=False)
    yield
    ray.shutdown()


@pytest.fixture(scope="session")
def small_setting() -> SettingConfig:
    """Real tweets, weak GloVe, strong = MiniLM cut to one layer (fast to embed)."""
    return SettingConfig(task="tweets", weak="glove50", strong="minilm_l1", max_examples=800,
                         test_size=200)


@pytest.fixture(scope="session")
def fast_student() -> StudentConfig:
    return StudentConfig(hidden=64, epochs=20, batch_size=64)


# ---- a real Ray cluster (moved here from test_cluster_job.py; used by test_observability) ----

import shutil  # noqa: E402
import signal  # noqa: E402
import socket  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
import urllib.request  # noqa: E402
from pathlib import Path  # noqa: E402

RAY_BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _up(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            return r.status == 200
    except OSError:
        return False


@pytest.fixture(scope="module")
def cluster():
    """`ray start --head --block` on 127.0.0.1 with free ports and its own temp dir, in its own
    process group; one head per test module. Yields the dashboard address (jobs API), the env
    for `ray` commands, the GCS address (ray.init / RAY_ADDRESS) and the metrics export port.

    Stopping: SIGTERM to `ray start` alone, which drains the node and stops what it started
    (≈2 s; signalling the whole group kills the GCS first and the drain then waits 30 s), then
    SIGKILL to anything left in the group. Never `ray stop`: it kills every cluster here."""
    # every port explicit: a default one (e.g. the agent's 52365) may be held by another
    # Ray on this machine, and then job submission fails with "No available agent"
    ports = {k: free_port() for k in ("gcs", "dashboard", "metrics", "client", "agent_http",
                                      "agent_grpc", "runtime_env")}
    # metrics exported every 1 s instead of 10 s, so tests see custom metrics quickly
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_metrics_report_interval_ms": "1000",
           "PATH": f"{RAY_BIN}:{os.environ['PATH']}"}
    # short and unique: Ray's socket paths have a length limit
    temp = Path("/tmp") / f"aar-ray-{os.getpid()}-{ports['gcs']}"
    head = subprocess.Popen(
        [str(RAY_BIN / "ray"), "start", "--head", "--block", "--node-ip-address=127.0.0.1",
         f"--port={ports['gcs']}", f"--dashboard-port={ports['dashboard']}",
         "--dashboard-host=127.0.0.1", f"--metrics-export-port={ports['metrics']}",
         f"--ray-client-server-port={ports['client']}",
         f"--dashboard-agent-listen-port={ports['agent_http']}",
         f"--dashboard-agent-grpc-port={ports['agent_grpc']}",
         f"--runtime-env-agent-port={ports['runtime_env']}", "--num-cpus=2",
         f"--temp-dir={temp}", "--disable-usage-stats"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True)
    log: list[str] = []

    def drain() -> None:  # read continuously, so a full pipe never blocks `ray start`
        for line in head.stdout:
            log.append(line)

    threading.Thread(target=drain, daemon=True).start()
    address = f"http://127.0.0.1:{ports['dashboard']}"
    deadline = time.time() + 90
    while time.time() < deadline and head.poll() is None:
        # the head's agent registers right after its HTTP server is up; jobs need it
        if (any("Ray runtime started" in line for line in log)
                and _up(f"{address}/api/gcs_healthz")
                and _up(f"http://127.0.0.1:{ports['agent_http']}/api/local_raylet_healthz")):
            break
        time.sleep(0.3)
    else:
        os.killpg(head.pid, signal.SIGKILL)
        pytest.fail("ray head did not come up: " + "".join(log)[-2000:])
    yield {"address": address, "env": env, "gcs": f"127.0.0.1:{ports['gcs']}",
           "metrics": ports["metrics"]}
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
