"""A real cluster: `ray start --head` on 127.0.0.1 with our own ports and temp dir, then
`ray job submit` of a tiny campaign. Only the cluster this test started is stopped (`ray stop`
would kill every cluster on the machine)."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from aar_ray.config import BudgetConfig, CampaignConfig, save_campaign

pytestmark = [pytest.mark.ray, pytest.mark.slow]
REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def cluster(tmp_path):
    """A head node in its own process group, killed as a group at the end."""
    ports = {k: free_port() for k in ("gcs", "dashboard", "metrics", "client")}
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "PATH": f"{BIN}:{os.environ['PATH']}"}
    temp = Path("/tmp") / f"aar-ray-{os.getpid()}"  # short: Ray's socket paths have a limit
    head = subprocess.Popen(
        [str(BIN / "ray"), "start", "--head", "--block", "--node-ip-address=127.0.0.1",
         f"--port={ports['gcs']}", f"--dashboard-port={ports['dashboard']}",
         "--dashboard-host=127.0.0.1", f"--metrics-export-port={ports['metrics']}",
         f"--ray-client-server-port={ports['client']}", "--num-cpus=2",
         f"--temp-dir={temp}", "--disable-usage-stats"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    address = f"http://127.0.0.1:{ports['dashboard']}"
    deadline = time.time() + 90
    while time.time() < deadline:
        ok = subprocess.run([str(BIN / "ray"), "job", "list", "--address", address], env=env,
                            capture_output=True).returncode == 0
        if ok:
            break
        time.sleep(1)
    else:
        os.killpg(head.pid, signal.SIGKILL)
        pytest.fail("ray head did not come up: " + head.stdout.read().decode()[-2000:])
    yield {"address": address, "env": env, "gcs": f"127.0.0.1:{ports['gcs']}",
           "metrics": ports["metrics"]}
    os.killpg(head.pid, signal.SIGTERM)  # --block: Ray stops the processes it started
    try:
        head.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(head.pid, signal.SIGKILL)


def test_job_submit_runs_a_campaign(cluster, small_setting, fast_student, cache_dir,
                                    tmp_path):
    cfg = CampaignConfig(name="job", setting=small_setting, student=fast_student, seeds=[0, 1],
                         agents=2, budget=BudgetConfig(trials_per_agent=2, wall_clock_s=300),
                         root=str(tmp_path / "runs"), cache_dir=cache_dir)
    save_campaign(cfg, tmp_path / "job.yaml")
    done = subprocess.run(
        [str(BIN / "ray"), "job", "submit", "--address", cluster["address"],
         "--submission-id", f"aar-test-{os.getpid()}", "--working-dir", str(REPO), "--",
         "python", "jobs/campaign.py", "--config", str(tmp_path / "job.yaml"),
         "--no-progress"],
        env=cluster["env"], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "SUCCEEDED" in done.stdout + done.stderr
    status = subprocess.run([str(BIN / "ray"), "job", "status", "--address",
                             cluster["address"], f"aar-test-{os.getpid()}"],
                            env=cluster["env"], capture_output=True, text=True)
    assert "SUCCEEDED" in status.stdout + status.stderr
    summary = json.loads(next((tmp_path / "runs").glob("job-*/summary.json")).read_text())
    board = summary["leaderboard"]
    assert board and summary["baseline"] and all(e["pgr"] is not None for e in board)
    assert set(summary["posts_per_agent"]) == {"agent-0", "agent-1"}
