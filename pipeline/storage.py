"""The store interface: what the op log, the journal and every other table run on.

Two backends implement it: ``bot.db.Database`` (SQLite, the default) and
``bot.pgdb.PgDatabase`` (PostgreSQL, ``[store] url = "postgresql://…"``).

Writing code against it:

- A write is a *job*, ``job(conn: Conn) -> T``, a plain synchronous function handed to
  :meth:`Storage.write`. It runs on the backend's one writer thread inside a transaction
  (possibly shared with other jobs: group commit); ``write`` returns its result once the
  commit is durable, and if the job raises, its writes are rolled back and ``write`` raises.
- ``conn.execute(sql, params)`` / ``conn.executemany(sql, rows)`` return a cursor with
  ``fetchall()``, ``fetchone()`` and ``rowcount``; rows index by position.
- Reads are :meth:`Storage.read` (one query on a separate connection).
- SQL is written once, in the SQLite dialect kept portable: ``?`` placeholders (``?1``…
  numbered ones too), ``INSERT … ON CONFLICT (…) DO UPDATE/DO NOTHING``, ``RETURNING`` or
  :func:`insert_id` for generated ids (never ``lastrowid`` directly), no ``rowid`` other
  than the op log's own column, no SQLite-only functions, plain
  ``INTEGER``/``TEXT``/``REAL``/``BLOB`` columns. The PostgreSQL backend translates each
  statement once (``bot.pg_sql``): placeholders, column types, ``INTEGER PRIMARY KEY`` ids
  handed out in commit order, the append-only triggers, ``json_each`` over an integer array,
  and the three catalogue reads the migrations use (``sqlite_master``'s table list, ``PRAGMA
  table_info``, ``sqlite_sequence``).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Protocol, TypeVar, runtime_checkable

T = TypeVar("T")


class Cursor(Protocol):
    """What a job gets back from :meth:`Conn.execute` (``sqlite3.Cursor`` is one)."""

    @property
    def rowcount(self) -> int: ...

    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...


class Conn(Protocol):
    """The connection a write job runs on (``sqlite3.Connection`` is one)."""

    def execute(self, sql: str, parameters: Any = ..., /) -> Cursor: ...

    def executemany(self, sql: str, parameters: Iterable[Any], /) -> Cursor: ...


Job = Callable[[Conn], T]


class Storage(Protocol):
    """``write`` runs ``job`` inside a transaction (possibly shared with other jobs: group
    commit) and returns after the commit is durable; if the job raises, its writes are
    rolled back and ``write`` raises. ``read`` runs one query on a separate connection.
    """

    async def write(self, job: Callable[[Conn], T]) -> T: ...

    async def read(self, sql: str, params: tuple[Any, ...] = ()) -> Sequence[Any]: ...


def insert_id(conn: Conn, sql: str, params: Sequence[Any], key: str) -> int | None:
    """Inside a write job: run ``sql``, an ``INSERT`` of one row without ``RETURNING`` (it
    may end ``ON CONFLICT … DO NOTHING``); the new row's ``key`` column (its ``INTEGER
    PRIMARY KEY``), or None when nothing was inserted.

    On SQLite the id is the insert's own rowid: the statement is stepped once, not twice
    as with ``RETURNING``. Each step hands the GIL to the event loop's thread, and under
    load the writer thread then waits for it longer than the step took. Elsewhere the
    statement gets ``RETURNING key``."""
    if isinstance(conn, sqlite3.Connection):
        cursor = conn.execute(sql, params)
        return cursor.lastrowid if cursor.rowcount > 0 else None
    rows = conn.execute(f"{sql} RETURNING {key}", params).fetchall()
    return int(rows[0][0]) if rows else None


def hold_appends(conn: Conn, table: str) -> None:
    """Inside a write job: until its transaction ends, no other connection appends to
    ``table`` (one with an ``INTEGER PRIMARY KEY``), so later reads of the same job see one
    state of it. SQLite's write transaction already shuts every other writer out; a
    connection that can do more (PostgreSQL's locks the table's id counter row) has a
    ``hold_appends`` method."""
    hold = getattr(conn, "hold_appends", None)
    if hold is not None:
        hold(table)


def serialise(conn: Conn, key: str) -> None:
    """Inside a write job: until its transaction ends, no other transaction passes
    ``serialise`` with the same ``key`` (a lease's name, say): their changes to what
    ``key`` guards come one after the other, in commit order. SQLite's write transaction
    already shuts every other writer out; PostgreSQL's takes an advisory lock (a connection
    that can has a ``serialise`` method), so two daemons' group commits meet on it instead
    of on the rows (where opposite orders deadlock)."""
    method = getattr(conn, "serialise", None)
    if method is not None:
        method(key)


def claim(conn: Conn, query: str, params: Sequence[Any] = ()) -> list[Any]:
    """Inside a write job: the rows of ``query`` (a plain ``SELECT … FROM one table``), each
    locked for this job until its transaction ends; rows another transaction holds are left
    out, not waited for. On PostgreSQL that is ``FOR UPDATE SKIP LOCKED`` (a connection that
    can has a ``claim`` method); SQLite's write transaction already shuts every other writer
    out, so there the query runs as it is."""
    method = getattr(conn, "claim", None)
    if method is not None:
        return list(method(query, params))
    return conn.execute(query, params).fetchall()


def shared(conn: Conn) -> bool:
    """Whether other daemons may write this store at the same time (PostgreSQL, K2): what a
    compare-and-set guard needs to check. On SQLite one daemon's per-project locks and the
    one writer already serialise every read-check-write."""
    return getattr(conn, "claim", None) is not None


def notify(conn: Conn, channel: str, payload: str) -> None:
    """Inside a write job: wake the listeners of ``channel`` once the job's transaction
    commits (never if it rolls back). PostgreSQL's ``pg_notify`` (a connection that can has a
    ``notify`` method, see :mod:`bot.pg_listen`); nothing on SQLite, where one daemon sees
    its own commits."""
    method = getattr(conn, "notify", None)
    if method is not None:
        method(channel, payload)


@runtime_checkable
class SnapshotStorage(Storage, Protocol):
    """A :class:`Storage` that can also run a read-only ``job`` on one consistent snapshot
    without holding up writes (``audit verify`` reads the whole log and every table so).
    A storage without it is read inside a write transaction instead."""

    async def snapshot(self, job: Callable[[Conn], T]) -> T: ...
