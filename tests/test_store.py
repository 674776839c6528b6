"""The SQLite store's schema versions: applied once each, in order, in place; a file from a
newer aar-ray is refused rather than misread."""
from __future__ import annotations

import sqlite3

import pytest

from aar_ray.lab.store import SchemaError, Store

V1 = "CREATE TABLE t (x INTEGER);"
V2 = "ALTER TABLE t ADD COLUMN y TEXT;"


def test_migrations_apply_once_in_order_and_keep_the_data(tmp_path):
    path = tmp_path / "a.sqlite"
    Store(path, [V1]).execute("INSERT INTO t (x) VALUES (1)")
    Store(path, [V1])  # reopened: V1 again would fail ("table t already exists")
    store = Store(path, [V1, V2])
    store.execute("INSERT INTO t VALUES (2, 'b')")
    assert store.rows("SELECT x, y FROM t ORDER BY x") == [{"x": 1, "y": None},
                                                           {"x": 2, "y": "b"}]
    assert store.one("PRAGMA user_version") == {"user_version": 2}


def test_a_failed_migration_leaves_the_file_at_its_last_version(tmp_path):
    path = tmp_path / "a.sqlite"
    Store(path, [V1])
    with pytest.raises(sqlite3.OperationalError):
        Store(path, [V1, "CREATE TABLE u (z INTEGER); ALTER TABLE missing ADD COLUMN q;"])
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA user_version").fetchone() == (1,)
    assert db.execute("SELECT name FROM sqlite_master WHERE name = 'u'").fetchall() == []


def test_a_database_from_a_newer_version_is_refused(tmp_path):
    path = tmp_path / "a.sqlite"
    Store(path, [V1, V2])
    with pytest.raises(SchemaError, match="newer aar-ray"):
        Store(path, [V1])
