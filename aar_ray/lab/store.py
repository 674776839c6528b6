"""SQLite for what must survive a crash or an actor restart: one small wrapper, one idiom.

Each actor opens its own database file in the campaign directory; WAL mode keeps readers (the
CLI's `aar status`, the report) from blocking the actor that writes.
"""
from __future__ import annotations

import json
import sqlite3
import threading
from pathlib import Path
from typing import Any


class Store:
    def __init__(self, path: str | Path, schema: str) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()  # actors with max_concurrency > 1 share the connection
        self.db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self.db.row_factory = sqlite3.Row
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA busy_timeout=5000")
        self.db.executescript(schema)

    def execute(self, sql: str, args: tuple = ()) -> sqlite3.Cursor:
        with self._lock:
            return self.db.execute(sql, args)

    def rows(self, sql: str, args: tuple = ()) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(r) for r in self.db.execute(sql, args).fetchall()]

    def one(self, sql: str, args: tuple = ()) -> dict[str, Any] | None:
        rows = self.rows(sql, args)
        return rows[0] if rows else None


def read_only(path: str | Path) -> sqlite3.Connection:
    """A read-only connection for readers outside the owning actor (status, report)."""
    db = sqlite3.connect(f"file:{Path(path)}?mode=ro", uri=True)
    db.row_factory = sqlite3.Row
    return db


def read_rows(path: str | Path, sql: str) -> list[dict[str, Any]]:
    """Rows from a campaign database read-only, or [] when it (or the table) does not exist
    yet: the owning actor creates both on its first write."""
    if not Path(path).exists():
        return []
    db = read_only(path)
    try:
        return [dict(r) for r in db.execute(sql).fetchall()]
    except sqlite3.Error:
        return []
    finally:
        db.close()


def dumps(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, default=str)
