"""ForumActor's logic: posts, replies and search in SQLite, so no post is lost to a crash.

A result post must cite a scored trial, and readers see the scorer's numbers for every cited
trial next to whatever the author wrote; a claimed PGR that disagrees with the scorer is
flagged on the post.

The scorer's view of a trial is read from the index the scorer keeps in its own database
(`lab/citable.py`), through the read-only records reader: checking a post's citations never
calls the scorer actor, which is busy scoring. Reads are answered from the forum's own index: a
`cites` table (post -> trial) and a `scores` table holding the scorer's view of every trial
cited so far. The score a trial was shown is fixed once it is submitted, but its replication
bit may change, so a view older than `fresh_s` is read again: in one batch per read at most,
never once per post.
"""
from __future__ import annotations

import json
import re
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from aar_ray.errors import Refusal
from aar_ray.lab.store import Store, dumps
from aar_ray.observe import metrics
from aar_ray.results import records

KINDS = ("result", "hypothesis", "insight", "error")
# the one place for the forum's limits: the tools' JSON schemas read them from here
MAX_TITLE, MAX_BODY, MAX_TAGS, MAX_TAG, MAX_CITES = 200, 8000, 10, 40, 20
CLAIM = re.compile(r"\bPGR\b[^0-9\-]{0,12}(-?\d*\.\d+|-?\d+)", re.IGNORECASE)

# Each entry one schema version, never edited once released: append to change it
MIGRATIONS = ["""
CREATE TABLE IF NOT EXISTS posts (
  id INTEGER PRIMARY KEY AUTOINCREMENT, request_id TEXT UNIQUE, author TEXT, title TEXT,
  body TEXT, kind TEXT, tags TEXT, cites TEXT, parent_id INTEGER, created REAL, flags TEXT);
CREATE INDEX IF NOT EXISTS posts_parent ON posts(parent_id);
CREATE TABLE IF NOT EXISTS cites (post_id INTEGER, trial_id TEXT);
CREATE INDEX IF NOT EXISTS cites_post ON cites(post_id);
CREATE TABLE IF NOT EXISTS scores (trial_id TEXT PRIMARY KEY, score TEXT, learnt REAL);
"""]


class ForumError(Refusal):
    """A post or query the forum refuses; the message says what to change."""


class Forum:
    def __init__(self, campaign_dir: str,
                 scores: Callable[[list[str]], dict[str, dict[str, Any]]] | None = None,
                 fresh_s: float = 5.0) -> None:
        self.store = Store(Path(campaign_dir) / "forum.sqlite", MIGRATIONS)
        # the scorer's view of cited trials (trial id -> view; unscored ones absent): its index
        self.scores = scores or (lambda ids: records.citable(campaign_dir, ids))
        self.fresh_s = fresh_s  # how old the index's view of a trial may be when shown
        if self.store.one("SELECT 1 AS x FROM cites LIMIT 1") is None:  # a forum from before
            self.store.execute("INSERT INTO cites SELECT p.id, j.value FROM posts p, "
                               "json_each(p.cites) j")

    def post(self, author: str, title: str, body: str, kind: str = "insight",
             tags: list[str] | None = None, cites: list[str] | None = None,
             parent_id: int | None = None, request_id: str | None = None) -> dict[str, Any]:
        """Validate and store a post (or reply); `request_id` makes a retried call idempotent."""
        tags, cites = list(tags or []), list(cites or [])
        if request_id:
            old = self.store.one("SELECT id FROM posts WHERE request_id=?", (request_id,))
            if old:
                return {"post_id": old["id"], "duplicate": True}
        if not isinstance(title, str) or not title.strip() or len(title) > MAX_TITLE:
            raise ForumError(f"title must be 1..{MAX_TITLE} characters")
        if not isinstance(body, str) or not body.strip() or len(body) > MAX_BODY:
            raise ForumError(f"body must be 1..{MAX_BODY} characters (got {len(body)})")
        if kind not in KINDS:
            raise ForumError(f"kind {kind!r} is not one of {list(KINDS)}")
        if len(tags) > MAX_TAGS or any(not isinstance(t, str) or len(t) > MAX_TAG for t in tags):
            raise ForumError(f"at most {MAX_TAGS} tags of at most {MAX_TAG} characters")
        if len(cites) > MAX_CITES or any(not isinstance(c, str) for c in cites):
            raise ForumError(f"cites must be at most {MAX_CITES} trial ids")
        scored = self._scored(cites)
        if kind == "result":
            missing = [c for c in cites if c not in scored]
            if not cites or missing:
                raise ForumError("a result post must cite scored trials (submit them first); "
                                 f"not scored: {missing or 'no trial cited'}")
        if parent_id is not None and self.store.one("SELECT id FROM posts WHERE id=?",
                                                    (parent_id,)) is None:
            raise ForumError(f"no post {parent_id} to reply to")
        flags = self._check_claims(body, scored)
        try:
            cur = self.store.execute(
                "INSERT INTO posts (request_id, author, title, body, kind, tags, cites,"
                " parent_id, created, flags) VALUES (?,?,?,?,?,?,?,?,?,?)",
                (request_id, author, title.strip(), body, kind, dumps(tags), dumps(cites),
                 parent_id, time.time(), dumps(flags)))
        except sqlite3.IntegrityError:  # the same request, concurrently: it is stored once
            old = self.store.one("SELECT id FROM posts WHERE request_id=?", (request_id,))
            return {"post_id": old["id"], "duplicate": True}
        for c in dict.fromkeys(cites):
            self.store.execute("INSERT INTO cites VALUES (?,?)", (cur.lastrowid, c))
        metrics.forum_post("reply" if parent_id is not None else kind)
        return {"post_id": cur.lastrowid, "flags": flags}

    def _scored(self, trial_ids: list[str]) -> dict[str, dict]:
        """The scorer's view of those of `trial_ids` that are scored: from the forum's index,
        reading the scorer's (one query) only for those it does not know or knew too long ago."""
        if not trial_ids:
            return {}
        ids, now = list(dict.fromkeys(trial_ids)), time.time()
        known = {r["trial_id"]: json.loads(r["score"]) for r in self.store.rows(
            f"SELECT trial_id, score FROM scores WHERE trial_id IN ({','.join('?' * len(ids))})"
            " AND learnt >= ?", (*ids, now - self.fresh_s))}
        missing = [t for t in ids if t not in known]
        if missing:
            fresh = self.scores(missing)
            for tid, score in fresh.items():
                self.store.execute("INSERT OR REPLACE INTO scores VALUES (?,?,?)",
                                   (tid, dumps(score), now))
            known.update(fresh)
        return known

    @staticmethod
    def _check_claims(body: str, scored: dict[str, dict[str, Any]]) -> list[str]:
        """Flag PGR figures in the text that no cited trial's scorer number supports."""
        truth = [s["public_pgr"] for s in scored.values() if s.get("public_pgr") is not None]
        flags = []
        for m in CLAIM.finditer(body):
            claimed = float(m.group(1))
            if not any(abs(claimed - t) <= 0.015 for t in truth):
                flags.append(f"claims PGR {claimed} but the scorer's numbers for the cited "
                             f"trials are {truth or 'none'}")
        return flags

    def reply(self, author: str, parent_id: int, body: str,
              request_id: str | None = None) -> dict[str, Any]:
        return self.post(author, "re", body, "insight", parent_id=parent_id,
                         request_id=request_id)

    def read(self, query: str = "", tag: str = "", sort: str = "newest", limit: int = 10,
             author: str = "") -> list[dict[str, Any]]:
        if sort not in ("newest", "top"):
            raise ForumError("sort must be 'newest' or 'top'")
        limit = max(1, min(int(limit), 50))
        sql, args = "SELECT * FROM posts WHERE parent_id IS NULL", []
        if query:
            sql += " AND (title LIKE ? OR body LIKE ?)"
            args += [f"%{query}%"] * 2
        if tag:
            sql += " AND tags LIKE ?"
            args.append(f'%"{tag}"%')
        if author:
            sql += " AND author = ?"
            args.append(author)
        if sort == "top":  # ranked by the best scorer number among a post's citations
            unknown = [r["trial_id"] for r in self.store.rows(
                "SELECT DISTINCT trial_id FROM cites WHERE trial_id NOT IN "
                "(SELECT trial_id FROM scores)")]
            self._scored(unknown)
            sql = ("SELECT * FROM (" + sql + ") p LEFT JOIN (SELECT c.post_id, "
                   "MAX(json_extract(s.score, '$.public_pgr')) AS best FROM cites c JOIN scores s"
                   " USING (trial_id) GROUP BY c.post_id) b ON b.post_id = p.id "
                   "ORDER BY COALESCE(b.best, -9) DESC, p.id DESC LIMIT ?")
        else:
            sql += " ORDER BY id DESC LIMIT ?"
        rows = self.store.rows(sql, (*args, limit))
        scored = self._scored([c for r in rows for c in json.loads(r["cites"])])
        replies: dict[int, list[dict[str, Any]]] = {r["id"]: [] for r in rows}
        if rows:
            for r in self.store.rows(
                    "SELECT id, parent_id, author, body, created FROM posts WHERE parent_id IN "
                    f"({','.join('?' * len(rows))}) ORDER BY id", tuple(replies)):
                replies[r.pop("parent_id")].append(r)
        return [self._view(r, scored, replies[r["id"]]) for r in rows]

    @staticmethod
    def _view(row: dict[str, Any], scored: dict[str, dict],
              replies: list[dict[str, Any]]) -> dict[str, Any]:
        cites = json.loads(row["cites"])
        return {"post_id": row["id"], "author": row["author"], "title": row["title"],
                "body": row["body"], "kind": row["kind"], "tags": json.loads(row["tags"]),
                "created": row["created"], "flags": json.loads(row["flags"]),
                "cited": [{"trial_id": c, **scored.get(c, {"public_pgr": None})} for c in cites],
                "replies": replies}

    def all_posts(self) -> list[dict[str, Any]]:
        return self.store.rows("SELECT * FROM posts ORDER BY id")

    def count(self) -> int:
        return self.store.one("SELECT COUNT(*) AS n FROM posts")["n"]
