"""Scale-out rules without a cluster: the forum answers from its own index, requests replayed
by a restarted agent are stored once, finished campaigns leave no write-ahead log, placement
options come from the config."""
from __future__ import annotations

import asyncio
import sqlite3

import pytest

from aar_ray.config import CampaignConfig, ConfigError, from_dict
from aar_ray.lab import placement
from aar_ray.lab.forum import Forum
from aar_ray.lab.store import Store, checkpoint
from aar_ray.lab.tools import LabToolbox
from aar_ray.lab.trials import TrialQueue

SCORES = {"t1": {"method": "vanilla", "params": {}, "agent": "a", "public_pgr": 0.31},
          "t2": {"method": "info_max", "params": {}, "agent": "b", "public_pgr": 0.42}}


class CountingScorer:
    """The scorer's view of cited trials (its `citable` index), counting calls and the ids asked."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    def __call__(self, ids: list[str]) -> dict:
        self.calls.append(list(ids))
        return {i: SCORES[i] for i in ids if i in SCORES}


def test_forum_reads_from_its_index_not_the_scorer(tmp_path):
    scorer = CountingScorer()
    forum = Forum(str(tmp_path), scorer, fresh_s=3600)
    forum.post("a", "vanilla", "public PGR 0.31", "result", cites=["t1"])
    forum.post("b", "info_max", "public PGR 0.42", "result", cites=["t2"])
    for i in range(30):
        forum.post("c", f"note {i}", "thinking", "insight")
    assert len(scorer.calls) == 2  # each scored trial asked once, when its post was made
    for sort in ("newest", "top", "top", "newest"):
        forum.read(sort=sort, limit=50)
    assert len(scorer.calls) == 2  # reads never ask again
    top = forum.read(sort="top", limit=2)
    assert [p["cited"][0]["public_pgr"] for p in top] == [0.42, 0.31]  # the scorer's numbers
    assert [len(forum.read(sort=s, limit=5)) for s in ("newest", "top")] == [5, 5]

    forum.post("d", "idea", "see t9", "insight", cites=["t9"])  # not scored (yet)
    forum.read(sort="newest")
    forum.read(sort="top")
    assert scorer.calls[-2:] == [["t9"], ["t9"]]  # an unknown id: one batch per read at most
    SCORES["t9"] = {"method": "vanilla", "params": {}, "agent": "d", "public_pgr": 0.9}
    try:
        assert forum.read(sort="top")[0]["title"] == "idea"  # learnt once scored
    finally:
        del SCORES["t9"]
    calls = len(scorer.calls)
    forum.fresh_s = 0  # a view may change (the replication bit): old ones are asked again,
    forum.read(sort="top", limit=3)  # all of a page's in one call
    assert len(scorer.calls) == calls + 1 and sorted(scorer.calls[-1]) == ["t1", "t2", "t9"]


def test_forum_from_before_the_index_is_reindexed(tmp_path):
    forum = Forum(str(tmp_path), CountingScorer())
    forum.post("a", "low", "public PGR 0.31", "result", cites=["t1"])
    forum.post("b", "high", "public PGR 0.42", "result", cites=["t2"])
    forum.store.execute("DELETE FROM cites")
    forum.store.execute("DELETE FROM scores")
    reopened = Forum(str(tmp_path), CountingScorer())
    assert [p["title"] for p in reopened.read(sort="top")] == ["high", "low"]


def test_replayed_step_posts_and_queues_once(tmp_path, small_setting):
    """An agent restarted from its saved state replays its unfinished step: same step, same
    requests, so the forum and the queue keep one of each; a later step is new."""
    cfg = CampaignConfig(setting=small_setting, seeds=[0, 1])
    queue = TrialQueue(str(tmp_path), cfg, None)
    queue._ensure_loop = lambda: None  # no dispatcher: trials are queued, never run here

    class Sync:
        def __init__(self, target):
            self.target = target

        def __getattr__(self, name):
            fn = getattr(self.target, name)
            return (lambda *a, **k: asyncio.run(fn(*a, **k))) if asyncio.iscoroutinefunction(
                fn) else fn

    forum = Forum(str(tmp_path), CountingScorer())
    seen = []
    for life in range(2):  # the agent's process, then its restart
        tools = LabToolbox("agent-0", tmp_path / "agents" / "agent-0", cfg, forum=forum,
                           scorer=None, queue=Sync(queue))
        tools.calls = life * 7  # a restarted process counts its calls from scratch
        tools.step = 3
        seen.append((tools.run_trial("vanilla", {}, [0]), tools.post("plan", "try it",
                                                                     "hypothesis")))
    assert seen[0][0]["trial_id"] == seen[1][0]["trial_id"]
    assert seen[0][1]["post_id"] == seen[1][1]["post_id"]
    tools.step = 4
    assert tools.run_trial("vanilla", {}, [0])["trial_id"] != seen[0][0]["trial_id"]
    assert forum.count() == 1 and len(queue.store.rows("SELECT * FROM trials")) == 2


def test_finished_campaign_leaves_no_write_ahead_log(tmp_path):
    store = Store(tmp_path / "forum.sqlite", ["CREATE TABLE t (x INTEGER);"])
    for i in range(100):
        store.execute("INSERT INTO t VALUES (?)", (i,))
    wal = tmp_path / "forum.sqlite-wal"
    assert wal.stat().st_size > 0
    store.db.close()  # the actor is gone (its process ended without closing cleanly)
    checkpoint(tmp_path)
    assert not wal.exists() or wal.stat().st_size == 0
    with sqlite3.connect(f"file:{tmp_path / 'forum.sqlite'}?mode=ro&immutable=1", uri=True) as db:
        assert db.execute("SELECT COUNT(*) FROM t").fetchone()[0] == 100  # all in the file


def test_placement_options_from_the_config():
    cfg = from_dict(CampaignConfig, {"resources": {
        "head_resources": {"aar_head": 0.01}, "agent_resources": {"aar_worker": 0.01},
        "trial_resources": {"gpu_node": 1}, "spread": True}})
    cfg.validate()
    assert placement.head(cfg) == {"resources": {"aar_head": 0.01}}
    assert placement.agents(cfg) == {"resources": {"aar_worker": 0.01},
                                     "scheduling_strategy": "SPREAD"}
    assert placement.trials(cfg)["resources"] == {"gpu_node": 1}
    assert placement.head(CampaignConfig()) == {}  # a laptop: no constraints
    bad = from_dict(CampaignConfig, {"resources": {"agent_resources": {"aar_worker": 0}}})
    with pytest.raises(ConfigError, match="agent_resources.aar_worker"):
        bad.validate()
