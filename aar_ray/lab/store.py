"""SQLite for what must survive a crash or an actor restart: one small wrapper, one idiom.

Each actor opens its own database file in the campaign directory and is its only writer;
everything else reads through `aar_ray/results/records.py`, read-only, and WAL mode keeps those
readers (status, report, audit) from blocking the actor that writes.

A database's schema is a list of migrations, numbered by position and recorded in SQLite's
`PRAGMA user_version`: opening applies the ones a file has not seen (a resumed campaign from
an older aar-ray gains new tables and columns in place), each in one transaction, and a file
written by a newer aar-ray is refused rather than misread.
"""
from __future__ import annotations

import errno
import json
import shutil
import sqlite3
import threading
from pathlib import Path
from typing import Any


class SchemaError(RuntimeError):
    """A database this code cannot read safely."""


class Store:
    def __init__(self, path: str | Path, migrations: list[str]) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()  # actors with max_concurrency > 1 share the connection
        self.db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self.db.row_factory = sqlite3.Row
        self.db.execute("PRAGMA journal_mode=WAL")
        # no fsync per commit (the WAL is synced at checkpoints): a crashed or restarted actor
        # loses nothing, only a power loss may roll back the last commits, and the database is
        # consistent either way; a forum post no longer waits on the disk
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.execute("PRAGMA busy_timeout=5000")
        self._migrate(migrations)

    def _migrate(self, migrations: list[str]) -> None:
        version = self.db.execute("PRAGMA user_version").fetchone()[0]
        if version > len(migrations):
            raise SchemaError(f"{self.path} has schema version {version}; this aar-ray knows "
                              f"{len(migrations)}: it was written by a newer aar-ray")
        for number, script in enumerate(migrations[version:], start=version + 1):
            # executescript commits first; BEGIN..COMMIT makes each step all or nothing
            try:
                self.db.executescript(
                    f"BEGIN;\n{script}\nPRAGMA user_version = {number};\nCOMMIT;")
            except sqlite3.Error:
                if self.db.in_transaction:
                    self.db.execute("ROLLBACK")
                self.db.close()
                raise

    def execute(self, sql: str, args: tuple = ()) -> sqlite3.Cursor:
        with self._lock:
            return self.db.execute(sql, args)

    def rows(self, sql: str, args: tuple = ()) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(r) for r in self.db.execute(sql, args).fetchall()]

    def one(self, sql: str, args: tuple = ()) -> dict[str, Any] | None:
        rows = self.rows(sql, args)
        return rows[0] if rows else None


MIN_FREE_MIB = 8  # below this the driver stops: SQLite and the agents' files still fit


def require_space(campaign_dir: str | Path) -> None:
    """Stop the campaign (ENOSPC, one line from `aar`) before its filesystem is full: a full
    disk fails every actor's writes at once, mid-transaction. What is written stays written;
    `aar run --resume` continues once space is freed."""
    free = shutil.disk_usage(campaign_dir).free >> 20
    if free < MIN_FREE_MIB:
        raise OSError(errno.ENOSPC, f"only {free} MiB free for the campaign directory (it "
                      f"stops below {MIN_FREE_MIB} MiB); free space, then `aar run --resume "
                      f"{campaign_dir}`")


def checkpoint(campaign_dir: str | Path) -> None:
    """Merge every database's write-ahead log into the database file: a finished campaign's
    directory is complete in its *.sqlite files (the last connection to close, here once the
    actors are gone, also removes the -wal and -shm files). On a full disk the logs stay: the
    next open (a resume, a reader) reads them."""
    for path in sorted(Path(campaign_dir).glob("*.sqlite")):
        db = sqlite3.connect(path)
        try:
            db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        except sqlite3.OperationalError as e:
            if "full" not in str(e):
                raise
        finally:
            db.close()


def dumps(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, default=str)
