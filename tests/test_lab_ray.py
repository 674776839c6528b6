"""The lab on a real (embedded) Ray: a campaign end to end, actors killed mid-campaign, a
campaign stopped and resumed."""
from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import ray

from aar_ray.config import BudgetConfig, CampaignConfig, ConfirmConfig, SettingConfig, save_campaign
from aar_ray.lab import NAMESPACE
from aar_ray.lab.campaign import run_campaign
from aar_ray.testing.fake_anthropic import serve_fake_claude

pytestmark = [pytest.mark.ray, pytest.mark.slow]


def tiny_config(small_setting, fast_student, cache_dir, root, **budget) -> CampaignConfig:
    return CampaignConfig(
        confirm=ConfirmConfig(top_k=2, seeds=[10, 11]),
        name="tiny", setting=small_setting, student=fast_student, seeds=[0, 1], agents=3,
        budget=BudgetConfig(trials_per_agent=budget.get("trials", 3), wall_clock_s=600),
        root=str(root), cache_dir=cache_dir)


def _tool_log(campaign_dir: Path, tool: str) -> list[dict]:
    out = []
    for f in (campaign_dir / "agents").glob("*/tool_calls.jsonl"):
        for line in f.read_text().splitlines():
            entry = json.loads(line)
            if entry["tool"] == tool and not entry.get("error"):
                out.append({"agent": f.parent.name, **json.loads(entry["result"])})
    return out


def _db(path: Path, sql: str) -> list[tuple]:
    with sqlite3.connect(path) as db:
        return db.execute(sql).fetchall()


def test_campaign_survives_killed_actors(local_ray, small_setting, fast_student, cache_dir,
                                         tmp_path):
    cfg = tiny_config(small_setting, fast_student, cache_dir, tmp_path, trials=4)
    cfg.audit.settings = HELD_OUT
    result: dict = {}
    runner = threading.Thread(target=lambda: result.update(run_campaign(cfg, progress=False)))
    runner.start()
    queue = None
    while queue is None:  # wait for the lab to come up, then for some finished trials
        try:
            queue = ray.get_actor("trials", namespace=NAMESPACE)
        except ValueError:
            time.sleep(0.5)
    while ray.get(queue.counts.remote())["done"] < 4:
        time.sleep(0.5)
    for name in ("agent-0", "forum"):
        ray.kill(ray.get_actor(name, namespace=NAMESPACE), no_restart=False)
    runner.join(timeout=600)
    assert not runner.is_alive() and result, "campaign did not finish after the kills"

    d = Path(result["campaign_dir"])
    assert all(a["finished"] for a in result["agents"])
    assert all(n >= 1 for n in result["posts_per_agent"].values())
    posted = {p["post_id"] for p in _tool_log(d, "post")}
    stored = {r[0] for r in _db(d / "forum.sqlite", "SELECT id FROM posts")}
    assert posted and posted <= stored, f"lost posts: {posted - stored}"
    submitted = {s["trial_id"] for s in _tool_log(d, "submit")}
    scored = {r[0] for r in _db(d / "scorer.sqlite", "SELECT trial_id FROM submissions")}
    assert submitted and submitted <= scored, f"lost submissions: {submitted - scored}"
    assert result["baseline"]["method"] == "vanilla"
    board = result["leaderboard"]
    assert board == sorted(board, key=lambda e: -e["pgr"])
    assert {e["trial_id"] for e in board} == scored  # only the scorer's own records
    assert_held_out_invisible(d)


HELD_OUT = [SettingConfig(task="compositional", weak="bow", strong="minilm_l1"),
            SettingConfig(task="tweet_pairs", weak="glove50", strong="minilm_l1")]


def assert_held_out_invisible(campaign_dir: Path) -> None:
    """The audit's held-out settings never reach an agent: not in any tool result, tool
    schema, forum post or the Claude prompt (they live only in the trusted config)."""
    from aar_ray.brains.claude import load_prompt
    from aar_ray.lab.tools import TOOLS

    assert "compositional" in (campaign_dir / "config.yaml").read_text()  # declared...
    seen = [json.dumps([t.description, t.schema]) for t in TOOLS.values()] + [load_prompt()]
    for f in (campaign_dir / "agents").glob("*/tool_calls.jsonl"):
        seen += [json.loads(line)["result"] for line in f.read_text().splitlines()]
    seen += [json.dumps(r) for r in _db(campaign_dir / "forum.sqlite", "SELECT * FROM posts")]
    assert len(seen) > 20
    for text in seen:  # ...but never shown
        for secret in ("compositional", "tweet_pairs", "bow->", "minilm_l1->"):
            assert secret not in text, f"held-out setting {secret!r} leaked: {text[:200]}"


def _aar(*args, env):
    return subprocess.Popen([sys.executable, "-m", "aar_ray.cli", "run", "--no-progress",
                             *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)


def test_stopped_campaign_resumes_without_rerunning(small_setting, fast_student, cache_dir,
                                                    tmp_path):
    cfg = tiny_config(small_setting, fast_student, cache_dir, tmp_path / "runs", trials=4)
    save_campaign(cfg, tmp_path / "tiny.yaml")
    env = {**os.environ, "RAY_AUTH_MODE": "disabled"}
    first = _aar("--config", str(tmp_path / "tiny.yaml"), env=env)
    db = None
    deadline = time.time() + 300
    while time.time() < deadline:
        dirs = list((tmp_path / "runs").glob("tiny-*"))
        db = dirs[0] / "trials.sqlite" if dirs else None
        if db and db.exists() and _db(db, "SELECT COUNT(*) FROM trials WHERE "
                                          "status='done' AND kind='agent'")[0][0] >= 3:
            break
        time.sleep(0.5)
    first.send_signal(signal.SIGTERM)
    out = first.communicate(timeout=120)[0]
    assert first.returncode == 130, out
    before = dict(_db(db, "SELECT trial_id, started FROM trials WHERE status='done'"))
    total = _db(db, "SELECT COUNT(*) FROM trials WHERE kind='agent'")[0][0]
    assert 3 <= total < 12, "campaign was not stopped midway"

    second = _aar("--resume", str(db.parent), env=env)
    out = second.communicate(timeout=600)[0]
    assert second.returncode == 0, out
    after = dict(_db(db, "SELECT trial_id, started FROM trials WHERE status='done'"))
    assert {t: after[t] for t in before} == before  # finished trials were not rerun
    assert _db(db, "SELECT COUNT(*) FROM trials WHERE kind='agent'")[0][0] == 12
    assert "campaign directory" in out
    summary = json.loads((db.parent / "summary.json").read_text())
    assert all(a["finished"] for a in summary["agents"])


def test_claude_campaign_through_the_sdk_keeps_the_key_secret(local_ray, small_setting,
                                                               fast_student, cache_dir,
                                                               tmp_path, monkeypatch):
    """brain: claude with the real anthropic client against the local fake Messages API:
    agents research through the lab's tools, costs are accounted, and the API key is never
    written to the campaign directory or Ray's logs."""
    from aar_ray.testing.fake_anthropic import FakeAnthropic

    secret = "sk-ant-test-" + "S3CR3T" * 4
    monkeypatch.setenv("ANTHROPIC_API_KEY", secret)
    with FakeAnthropic() as fake:
        cfg = tiny_config(small_setting, fast_student, cache_dir, tmp_path, trials=2)
        cfg.brain = "claude"
        cfg.claude.base_url = fake.base_url
        cfg.budget.steps_per_agent = 25
        summary = run_campaign(cfg, progress=False)
        sent = [r["headers"] for r in fake.requests]
    assert any(secret in json.dumps(h) for h in sent)  # it did authenticate with the key
    assert all(n >= 1 for n in summary["posts_per_agent"].values())
    assert all(a["usage"]["dollars"] > 0 for a in summary["agents"])
    logs = Path(ray._private.worker.global_worker.node.get_logs_dir_path())
    for root in (Path(summary["campaign_dir"]), logs):
        for f in root.rglob("*"):
            if f.is_file():
                assert secret.encode() not in f.read_bytes(), f"API key leaked into {f}"


def test_campaign_dollar_budget_stops_every_agent(local_ray, small_setting, fast_student,
                                                  cache_dir, tmp_path):
    """budget.dollars_total bounds the whole fleet (fake Claude, real SDK): each agent stops at
    its equal share, within one step, and no agent is cut short because others overshot."""
    cfg = tiny_config(small_setting, fast_student, cache_dir, tmp_path, trials=6)
    cfg.brain = "fake-claude"
    assert serve_fake_claude(cfg)  # the test starts the fake; agents reach it on 127.0.0.1
    cfg.budget.steps_per_agent = 200
    cfg.budget.dollars_total = 0.05
    summary = run_campaign(cfg, progress=False)
    spent = [a["usage"]["dollars"] for a in summary["agents"]]
    steps = [a["steps"] for a in summary["agents"]]
    assert max(steps) < 200 and all(a["finished"] for a in summary["agents"])
    assert all(0.05 / 3 <= s < 0.05 / 3 + 0.01 for s in spent), spent  # within a step
    assert ("dollar budget" in (summary["stopped_by"] or "")) == (sum(spent) >= 0.05)
