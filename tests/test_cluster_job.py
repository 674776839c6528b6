"""A real cluster: `ray start --head` on 127.0.0.1 with our own ports and temp dir, then
`ray job submit` of a tiny campaign. The `cluster` fixture (conftest.py) stops only the cluster
it started (`ray stop` would kill every cluster on the machine)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from aar_ray.config import BudgetConfig, CampaignConfig, save_campaign

pytestmark = [pytest.mark.ray, pytest.mark.slow]
REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


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
    assert "succeeded" in (done.stdout + done.stderr).lower()
    status = subprocess.run([str(BIN / "ray"), "job", "status", "--address",
                             cluster["address"], f"aar-test-{os.getpid()}"],
                            env=cluster["env"], capture_output=True, text=True)
    assert "succeeded" in (status.stdout + status.stderr).lower()
    summary = json.loads(next((tmp_path / "runs").glob("job-*/summary.json")).read_text())
    board = summary["leaderboard"]
    assert board and summary["baseline"] and all(e["pgr"] is not None for e in board)
    assert set(summary["posts_per_agent"]) == {"agent-0", "agent-1"}
