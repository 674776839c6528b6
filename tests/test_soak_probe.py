"""The soak benchmark's end checks and growth rate, on a hand-made campaign directory: each
check reads zero on consistent records and counts exactly what was broken."""
from __future__ import annotations

import json
import sqlite3

import pytest

from aar_ray.bench import soak_probe


def _db(path, script, rows):
    with sqlite3.connect(path) as c:
        c.executescript(script)
        for sql, args in rows:
            c.execute(sql, args)


@pytest.fixture
def campaign(tmp_path):
    _db(tmp_path / "trials.sqlite", "CREATE TABLE trials (trial_id TEXT, seq INT, agent TEXT, "
        "kind TEXT, status TEXT, parent TEXT, params TEXT, seeds TEXT, provenance TEXT)",
        [("INSERT INTO trials VALUES (?,?,?,?,?,?,'{}','[]','{}')", r) for r in [
            ("t1", 1, "a", "agent", "done", None), ("t2", 2, "a", "agent", "done", None),
            ("b1", 3, "baseline", "baseline", "done", None),
            ("c1", 4, "confirm", "confirm", "done", "confirm:c1")]])
    _db(tmp_path / "scorer.sqlite", "CREATE TABLE recorded (trial_id TEXT PRIMARY KEY)",
        [("INSERT INTO recorded VALUES (?)", (t,)) for t in ("t1", "t2", "b1")])
    _db(tmp_path / "forum.sqlite", "CREATE TABLE posts (id INTEGER PRIMARY KEY, author TEXT, "
        "title TEXT, body TEXT, cites TEXT, parent_id INT); CREATE TABLE cites (post_id INT, "
        "trial_id TEXT)", [("INSERT INTO posts VALUES (1,'a','r','x','[\"t1\"]',NULL)", ()),
                           ("INSERT INTO cites VALUES (1,'t1')", ())])
    (tmp_path / "agents" / "a").mkdir(parents=True)
    log = [{"tool": "run_trial", "result": json.dumps({"trial_id": t})} for t in ("t1", "t2")]
    log.append({"tool": "post", "result": json.dumps({"post_id": 1})})
    (tmp_path / "agents" / "a" / "tool_calls.jsonl").write_text(
        "".join(json.dumps(e) + "\n" for e in log))
    return tmp_path


ZERO = {"lost_trials": 0, "lost_posts": 0, "duplicate_requests": 0}


def _exec(path, sql):
    with sqlite3.connect(path) as c:
        c.execute(sql)


def test_consistent_records_check_clean(campaign):
    assert soak_probe.end_checks(campaign) == ZERO


@pytest.mark.parametrize(("db", "sql", "key"), [
    ("scorer", "DELETE FROM recorded WHERE trial_id='t2'", "lost_trials"),  # never scored
    ("trials", "UPDATE trials SET status='running' WHERE trial_id='t1'", "lost_trials"),
    ("forum", "DELETE FROM cites", "lost_posts"),  # a citation not indexed
    ("forum", "DELETE FROM posts", "lost_posts"),  # the agent was told it was stored
    ("trials", "INSERT INTO trials VALUES ('t3',5,'a','agent','error',NULL,'{}','[]','{}')",
     "duplicate_requests"),  # a trial its agent never got back: a replay ran it again
    ("trials", "INSERT INTO trials VALUES ('c2',6,'confirm','confirm','done','confirm:c1',"
               "'{}','[]','{}')", "duplicate_requests"),
    ("forum", "INSERT INTO posts VALUES (2,'a','r','x','[]',NULL)", "duplicate_requests"),
])
def test_each_check_counts_what_was_broken(campaign, db, sql, key):
    _exec(campaign / f"{db}.sqlite", sql)
    assert soak_probe.end_checks(campaign) == {**ZERO, key: 1}


def test_growth_is_the_slope_after_the_warmup():
    samples = [{"t_s": t, "m": 500 if t < 600 else 100 + t / 36} for t in range(0, 3600, 60)]
    assert soak_probe.growth_per_h(samples, "m", 600) == pytest.approx(100)
    assert soak_probe.growth_per_h(samples[:1], "m", 0) is None
