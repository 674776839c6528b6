"""The scorer's index of what anyone may see of a submission: the `citable` table in
scorer.sqlite. Per submitted trial: its configuration and author, the public numbers the Ladder
revealed (rounded; none where it withheld them) and whether its configuration replicated.

The scorer writes a row as it scores a submission, and rewrites the replication bit whenever a
submission or the baseline can change it. The agent's feedback is read from these rows, and so
is the forum's check of a post's citations, through the read-only records reader
(`results/records.py`, WAL): a post never waits on the busy scorer actor, and it sees exactly
what the scorer would have said.
"""
from __future__ import annotations

import json
import threading
from collections.abc import Callable
from typing import Any

from aar_ray.lab import rules
from aar_ray.lab.store import Store, dumps
from aar_ray.results import records

SCHEMA = """
CREATE TABLE IF NOT EXISTS citable (
  trial_id TEXT PRIMARY KEY, config TEXT, view TEXT, replicated INTEGER);
CREATE INDEX IF NOT EXISTS citable_config ON citable(config);
"""
SHOWN = ("public_delta", "public_delta_ci", "public_pgr", "replicated")  # the numbers in a view


def config_key(method: str, params: dict[str, Any]) -> str:
    """One configuration: a method and its parameters, canonically."""
    return dumps([method, params])


class Citable:
    def __init__(self, store: Store, decimals: int,
                 replicated: Callable[[str, dict[str, Any]], bool | None]) -> None:
        self.store, self.decimals = store, decimals
        self.replicated = replicated  # the scorer's bit for (method, params), from ground truth
        self._lock = threading.Lock()  # submissions are scored side by side (max_concurrency)
        # submissions it lacks: from a scorer before the index, or one stopped between the two
        for r in store.rows("SELECT trial_id FROM submissions WHERE trial_id NOT IN "
                            "(SELECT trial_id FROM citable) ORDER BY submitted_at"):
            self.add(r["trial_id"])

    def add(self, trial_id: str) -> None:
        """Index a stored submission, and refresh its configuration's replication bit."""
        row = self.store.one("SELECT s.agent, s.shown, s.public, r.method, r.params FROM "
                             "submissions s JOIN recorded r USING (trial_id) WHERE trial_id=?",
                             (trial_id,))
        params = json.loads(row["params"])
        view = {"method": row["method"], "params": params, "agent": row["agent"],
                **rules.shown_scores(row["shown"], json.loads(row["public"]), self.decimals)}
        config = config_key(row["method"], params)
        self.store.execute("INSERT OR REPLACE INTO citable (trial_id, config, view) "
                           "VALUES (?,?,?)", (trial_id, config, dumps(view)))
        self.replicate([config])

    def replicate(self, configs: list[str] | None = None) -> None:
        """Store the replication bit of `configs` (default: every indexed one). Serialised, so
        the bit written last was computed from every submission stored before it."""
        with self._lock:
            for config in configs or [r["config"] for r in self.store.rows(
                    "SELECT DISTINCT config FROM citable")]:
                self.store.execute("UPDATE citable SET replicated=? WHERE config=?",
                                   (self.replicated(*json.loads(config)), config))

    def view(self, trial_id: str) -> dict[str, Any]:
        return records.citable_view(self.store.one(
            "SELECT view, replicated FROM citable WHERE trial_id=?", (trial_id,)))
