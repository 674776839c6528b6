"""The lab on a multi-node Ray cluster on this machine (a head and two workers, all on
127.0.0.1): placement from the config, and a campaign that loses a worker node midway, its
head-side scorer and forum killed while the node is gone, and still finishes with every trial
scored exactly once and every post kept once."""
from __future__ import annotations

import json
import sqlite3
import threading
import time
from pathlib import Path

import pytest
import ray

from aar_ray.config import BudgetConfig, CampaignConfig, ConfirmConfig
from aar_ray.lab import NAMESPACE
from aar_ray.lab.campaign import run_campaign
from aar_ray.testing.cluster import local_cluster, place_on_cluster

pytestmark = [pytest.mark.ray, pytest.mark.slow]

AGENTS, TRIALS = 4, 2


@pytest.fixture(scope="module")
def multinode():
    with local_cluster(workers=2) as cluster:
        ray.init(address=cluster.address, namespace=NAMESPACE, log_to_driver=False)
        yield cluster


def node_of(actor_name: str) -> str:
    actor = ray.get_actor(actor_name, namespace=NAMESPACE)
    return ray.get(actor.__ray_call__.remote(
        lambda self: ray.get_runtime_context().get_node_id()), timeout=120)


def count(db: Path, sql: str) -> int:
    with sqlite3.connect(db) as c:
        return c.execute(sql).fetchone()[0]


def test_campaign_survives_losing_a_worker_node(multinode, small_setting, fast_student,
                                                cache_dir, tmp_path):
    cfg = CampaignConfig(name="multinode", confirm=ConfirmConfig(top_k=2, seeds=[10, 11]),
                         setting=small_setting, student=fast_student,
                         seeds=[0], agents=AGENTS, cache_dir=cache_dir, root=str(tmp_path),
                         budget=BudgetConfig(trials_per_agent=TRIALS, wall_clock_s=600))
    cfg.resources.agents_per_actor = 2
    place_on_cluster(cfg.resources)
    cfg.scoring.control_top_k = 0
    cfg.confirm.top_k, cfg.confirm.seeds = 1, [100, 101]
    result: dict = {}
    runner = threading.Thread(target=lambda: result.update(run_campaign(cfg, progress=False)))
    runner.start()
    queue = None
    deadline = time.time() + 300
    while time.time() < deadline:  # midway: trials finished, both workers running one
        try:
            queue = queue or ray.get_actor("trials", namespace=NAMESPACE)
            c = ray.get(queue.counts.remote("agent"))
            if c["done"] >= 2 and c["running"] >= 2:
                break
        except ValueError:
            pass
        time.sleep(0.2)
    else:
        pytest.fail("the campaign never had trials running on both workers")

    head = multinode.head_node.node_id
    workers = {n.node_id: n for n in multinode.worker_nodes}
    assert {node_of(n) for n in ("scorer", "forum", "trials")} == {head}
    agent_nodes = {name: node_of(name) for name in ("agents-0-1", "agents-2-3")}
    assert set(agent_nodes.values()) <= set(workers)
    lost = agent_nodes["agents-0-1"]
    multinode.remove_node(workers[lost], allow_graceful=False)  # a trial and agents with it
    for name in ("scorer", "forum"):  # the head-side actors fail too while the node is gone
        ray.kill(ray.get_actor(name, namespace=NAMESPACE), no_restart=False)
    moved, until = lost, time.time() + 120  # its processes outlive the raylet a moment
    while moved == lost and time.time() < until:
        time.sleep(0.5)
        moved = node_of("agents-0-1")
    assert moved in workers and moved != lost  # restarted on the surviving worker
    runner.join(timeout=600)
    assert not runner.is_alive() and result, "the campaign did not finish after the node loss"

    d = Path(result["campaign_dir"])
    assert all(a["finished"] for a in result["agents"])
    requested = AGENTS * TRIALS  # the offline brain runs its whole budget
    assert count(d / "trials.sqlite", "SELECT COUNT(*) FROM trials WHERE kind='agent'") \
        == count(d / "trials.sqlite", "SELECT COUNT(*) FROM trials WHERE kind='agent' AND "
                                      "status='done'") == requested
    agent_rows = "FROM {} WHERE agent LIKE 'agent-%'"
    assert count(d / "scorer.sqlite", "SELECT COUNT(*) " + agent_rows.format("recorded")) \
        == count(d / "scorer.sqlite", "SELECT COUNT(*) " + agent_rows.format("submissions")) \
        == requested  # recorded and scored exactly once each
    # each agent posts a plan, one result per trial and a summary: none lost, none twice
    assert count(d / "forum.sqlite", "SELECT COUNT(*) FROM posts") == AGENTS * (TRIALS + 2)
    assert count(d / "forum.sqlite", "SELECT COUNT(DISTINCT author || title || body) "
                                     "FROM posts") == AGENTS * (TRIALS + 2)
    posted = set()
    for f in (d / "agents").glob("*/tool_calls.jsonl"):
        for line in f.read_text().splitlines():
            e = json.loads(line)
            if e["tool"] == "post" and not e.get("error"):
                posted.add(json.loads(e["result"])["post_id"])
    assert len(posted) == AGENTS * (TRIALS + 2)
    assert not list(d.glob("*.sqlite-wal")) or all(
        f.stat().st_size == 0 for f in d.glob("*.sqlite-wal"))
