"""``pipeline.storage.insert_id``: the id of the row an insert added, or None when its
conflict clause left the table as it was; the same from SQLite's own rowid as from
``RETURNING`` (the path other backends take)."""

from __future__ import annotations

import sqlite3
from typing import Any

from pipeline.storage import insert_id

INSERT = "INSERT INTO t (k) VALUES (?) ON CONFLICT (k) DO NOTHING"


class Wrapped:
    """A connection that is not an ``sqlite3.Connection``: ``insert_id`` asks for
    ``RETURNING``, as it does on PostgreSQL."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def execute(self, sql: str, parameters: Any = (), /) -> sqlite3.Cursor:
        return self.conn.execute(sql, parameters)

    def executemany(self, sql: str, parameters: Any, /) -> sqlite3.Cursor:
        return self.conn.executemany(sql, parameters)


def _table() -> sqlite3.Connection:
    conn = sqlite3.connect(":memory:", isolation_level=None)
    conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, k TEXT NOT NULL UNIQUE)")
    return conn


def test_a_new_row_gets_its_id_and_a_conflict_gets_none_on_both_paths() -> None:
    for conn in (_table(), Wrapped(_table())):
        assert insert_id(conn, INSERT, ("a",), "id") == 1
        assert insert_id(conn, INSERT, ("b",), "id") == 2
        assert insert_id(conn, INSERT, ("a",), "id") is None  # not the last insert's id
        assert insert_id(conn, INSERT, ("c",), "id") == 3
        assert conn.execute("SELECT k FROM t ORDER BY id").fetchall() == [("a",), ("b",), ("c",)]
