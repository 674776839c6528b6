"""The one read-only reader of a campaign directory's databases: what the scorer recorded
(`scorer.sqlite`), the trial queue's state (`trials.sqlite`) and the forum (`forum.sqlite`).

Each database is written only by the actor that owns it (`lab/store.py`); everything that reads
them afterwards — status, report, audit, rerun, the CLI — reads through here, so the SQL and the
JSON columns are decoded in one place. Connections are read-only (`mode=ro`) and WAL lets them
read while the campaign runs. A database or table that does not exist yet reads as empty: the
owning actor creates both on its first write.
"""
from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

from aar_ray.config import ConfigError

SCORER, QUEUE, FORUM = "scorer.sqlite", "trials.sqlite", "forum.sqlite"


class RecordsError(ConfigError):
    """A campaign directory lacks what was asked of it; says what."""


def campaign_dir(path: str | Path) -> Path:
    """`path` as a campaign directory; a RecordsError (bad input, exit 2) if it is none."""
    d = Path(path)
    if not (d / "config.yaml").exists() and not (d / QUEUE).exists():
        raise RecordsError(f"{d}: not a campaign directory (no config.yaml or {QUEUE})")
    return d


def connect(path: str | Path) -> sqlite3.Connection:
    """A read-only connection to one campaign database."""
    db = sqlite3.connect(f"file:{Path(path)}?mode=ro", uri=True)
    db.row_factory = sqlite3.Row
    return db


def _rows(path: Path, sql: str, args: tuple = ()) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    db = connect(path)
    try:
        return [dict(r) for r in db.execute(sql, args).fetchall()]
    except sqlite3.Error:
        return []
    finally:
        db.close()


def _decode(row: dict[str, Any], **defaults: Any) -> dict[str, Any]:
    """Parse the JSON text columns present in `row`, each with its default when NULL."""
    for key, default in defaults.items():
        if key in row:
            row[key] = json.loads(row[key]) if row[key] else default
    return row


def _scorer(campaign_dir: str | Path, required: bool) -> Path:
    path = Path(campaign_dir) / SCORER
    if required and not path.exists():
        raise RecordsError(f"{campaign_dir}: no {SCORER} (not a campaign directory?)")
    return path


def submissions(campaign_dir: str | Path, *, required: bool = False) -> list[dict[str, Any]]:
    """Every submission with its recorded trial, oldest first: trial_id, agent, submitted_at,
    shown (the Ladder-revealed public PGR or None), flags, private (the scorer's private-split
    score: pgr, se, per_seed), method, params, seeds, provenance."""
    rows = _rows(_scorer(campaign_dir, required),
                 "SELECT s.trial_id, s.agent, s.submitted_at, s.shown, s.flags, s.private, "
                 "t.method, t.params, t.seeds, t.provenance FROM submissions s "
                 "JOIN recorded t USING (trial_id) ORDER BY s.submitted_at, s.trial_id")
    return [_decode(r, flags=[], private={}, params={}, seeds=[], provenance={}) for r in rows]


def scored_trial(campaign_dir: str | Path, trial_id: str) -> dict[str, Any] | None:
    """The scorer's record of one trial (method, params, seeds, provenance, the `preds` blob as
    the scorer packed it) and its private score if it was submitted; None if never recorded."""
    rows = _rows(_scorer(campaign_dir, True),
                 "SELECT t.*, s.private FROM recorded t LEFT JOIN submissions s USING (trial_id) "
                 "WHERE t.trial_id=?", (trial_id,))
    return _decode(rows[0], params={}, seeds=[], provenance={}, private=None) if rows else None


def citable(campaign_dir: str | Path, trial_ids: list[str]) -> dict[str, dict[str, Any]]:
    """What anyone may see of those of `trial_ids` that were submitted (the scorer's `citable`
    index, `lab/citable.py`): method, params, agent, the Ladder-shown public_delta,
    public_delta_ci and public_pgr, and replicated (None until re-run). A trial never
    submitted, or unknown, is absent."""
    ids = list(dict.fromkeys(trial_ids))
    rows = _rows(_scorer(campaign_dir, False), "SELECT trial_id, view, replicated FROM citable "
                 f"WHERE trial_id IN ({','.join('?' * len(ids))})", tuple(ids)) if ids else []
    return {r["trial_id"]: citable_view(r) for r in rows}


def citable_view(row: dict[str, Any]) -> dict[str, Any]:
    """One `citable` row (its `view` and `replicated` columns) as the scorer shows it."""
    bit = row["replicated"]
    return {**json.loads(row["view"]), "replicated": None if bit is None else bool(bit)}


def campaigns_with_trial(root: str | Path, trial_id: str) -> list[Path]:
    """The campaign directories under `root` whose scorer recorded `trial_id`."""
    return [p.parent for p in sorted(Path(root).glob(f"*/{SCORER}"))
            if _rows(p, "SELECT 1 FROM recorded WHERE trial_id=?", (trial_id,))]


def events(campaign_dir: str | Path) -> list[dict[str, Any]]:
    """The scorer's integrity events (sandbox violations, near-duplicates, ignored teachers)."""
    return _rows(_scorer(campaign_dir, False), "SELECT * FROM events ORDER BY id")


def queued_trials(campaign_dir: str | Path) -> list[dict[str, Any]]:
    """The trial queue's rows in request order: status, kind (agent / control / baseline),
    timings, error, provenance."""
    rows = _rows(Path(campaign_dir) / QUEUE, "SELECT * FROM trials ORDER BY seq")
    return [_decode(r, params={}, seeds=[], provenance={}) for r in rows]


def json_file(path: str | Path) -> Any:
    """A campaign's JSON file (summary.json, audit.json, an agent's state.json), or None when it
    is missing or half-written (the campaign may still be running)."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None


def agents(campaign_dir: str | Path) -> list[dict[str, Any]]:
    """Each agent's steps, whether it finished, and its brain's usage (tokens, dollars):
    summary.json's once the campaign ended, else each agent's saved state."""
    d = Path(campaign_dir)
    summary = json_file(d / "summary.json")
    if isinstance(summary, dict) and isinstance(summary.get("agents"), list):
        return summary["agents"]
    out = []
    for state_file in sorted((d / "agents").glob("*/state.json")):
        state = json_file(state_file) or {}
        out.append({"agent": state_file.parent.name, "steps": state.get("steps"),
                    "finished": state.get("finished"),
                    "usage": (state.get("brain") or {}).get("usage") or {}})
    return out


def posts(campaign_dir: str | Path) -> list[dict[str, Any]]:
    """Every forum post and reply, oldest first, as stored (agent text: untrusted)."""
    return _rows(Path(campaign_dir) / FORUM, "SELECT * FROM posts ORDER BY id")
