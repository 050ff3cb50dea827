"""The PostgreSQL backend of the store (``[store] url = "postgresql://…"``), driver psycopg 3.

The same shape as :class:`bot.db.Database`: one writer connection on its own thread runs
each group of write jobs as one transaction (group commit, ``synchronous_commit`` on, so
``write`` returns after the commit is durable: S4), and reads go through a small pool of
async connections. Jobs see a :class:`PgConn`, which translates the portable SQLite-dialect
SQL they write (:mod:`bot.pg_sql`). A connection found dead before a transaction began
(the server restarted, ``pg_terminate_backend``) is replaced and the group runs on the new
one; a connection lost inside a transaction fails that group's jobs with
:class:`StoreUnavailable` (whether it committed is unknown, so it is never re-run) and is
replaced for the next group. A read on a dead pooled connection is tried once more.

Why psycopg and not asyncpg: ``python -m bench.pg_driver`` measures both on the same local
server (appends/s through group-committed transactions, and a point read's latency; the
figures are in the README): appends even, reads faster through psycopg. And write jobs are
synchronous functions shared with the SQLite backend, which psycopg runs as they are on the
writer thread; asyncpg would need every job rewritten as a coroutine.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import psycopg
from psycopg_pool import AsyncConnectionPool

from bot import pg_sql
from bot.db import GroupWriter, Job, Outcome
from config.base import redact_url
from config.errors import StoreError, StoreUnavailable

log = logging.getLogger("musher.db")

_CONNECT_TIMEOUT_S = 10
_BUSY_RUNS = 8


class StoreBusy(StoreError):
    """A lock another daemon's transaction held (see :meth:`PgConn.serialise`): the group
    runs again; raised to a writer only when it stayed busy every time."""


class PgConn:
    """What a write job gets on PostgreSQL: ``execute``/``executemany`` in SQLite's dialect."""

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self.raw = conn
        self.busy: set[str] = set()  # the locks another transaction held (see _commit_group)
        self._held: set[str] = set()  # taken by serialise in this transaction

    def execute(self, sql: str, parameters: Sequence[Any] = (), /) -> psycopg.Cursor[Any]:
        if pg_sql.is_ddl(sql):
            cursor = self.raw.cursor()
            # IF NOT EXISTS is not safe against a concurrent twin: daemons starting together
            # take turns (the lock lasts until the transaction ends)
            cursor.execute(b"SELECT pg_advisory_xact_lock(7236)")
            for text in pg_sql.ddl(sql):
                cursor.execute(text.encode())
            return cursor
        translated = pg_sql.statement(sql)
        try:
            return self.raw.execute(translated.query, translated.params(parameters))
        except psycopg.Error as exc:
            if exc.diag.sqlstate == pg_sql.BUSY and exc.diag.message_primary:
                self.busy.add(exc.diag.message_primary)
            raise

    def serialise(self, key: str) -> None:
        """See :func:`pipeline.storage.serialise`: the advisory lock ``key``, never waited
        for here: held elsewhere, the job fails and its group runs again with it taken
        first."""
        if key in self._held:
            return
        row = self.raw.execute(pg_sql.TRY_LOCK, (key,)).fetchone()
        if row is None or not row[0]:
            self.busy.add(key)
            raise StoreBusy(f"{key} is held by another transaction")
        self._held.add(key)

    def hold_appends(self, table: str) -> None:
        """See :func:`pipeline.storage.hold_appends`: the lock every append to ``table``
        takes before its id (then its id counter row, which nobody else can hold)."""
        self.serialise(f"ids:{table}")
        counters = self.raw.execute(b"SELECT to_regclass('musher_sequence')").fetchone()
        if counters is not None and counters[0] is not None:  # else no table has ids yet
            query = b"SELECT seq FROM musher_sequence WHERE name = %s FOR UPDATE"
            self.raw.execute(query, (table,))

    def lock_first(self, keys: Iterable[str]) -> None:
        """At the start of a transaction: wait for each of ``keys``' advisory locks, in
        one order every daemon shares (by the lock's number), so two waiters never wait
        for each other."""
        wanted = sorted(keys)
        if wanted:
            numbers = self.raw.execute(pg_sql.SORTED_KEYS, (wanted,)).fetchall()
            for (number,) in numbers:
                self.raw.execute(pg_sql.LOCK, (number,))
            self._held.update(wanted)

    def claim(self, sql: str, parameters: Sequence[Any] = ()) -> list[Any]:
        """See :func:`pipeline.storage.claim`: ``sql`` with ``FOR UPDATE SKIP LOCKED``."""
        translated = pg_sql.statement(sql)
        query = translated.query + b" FOR UPDATE SKIP LOCKED"
        return list(self.raw.execute(query, translated.params(parameters)).fetchall())

    def notify(self, channel: str, payload: str) -> None:
        """See :func:`pipeline.storage.notify`: ``pg_notify``, delivered at commit."""
        self.raw.execute(b"SELECT pg_notify(%s, %s)", (channel, payload))

    def executemany(self, sql: str, parameters: Iterable[Sequence[Any]], /) -> psycopg.Cursor[Any]:
        translated = pg_sql.statement(sql)
        cursor = self.raw.cursor()
        rows = [translated.params(p) or () for p in parameters]
        cursor.executemany(translated.query, rows)
        return cursor


class PgDatabase(GroupWriter):
    """A PostgreSQL database written by one thread and read through a pool."""

    backend = "postgresql"

    def __init__(
        self,
        url: str,
        data_dir: Path,
        executor: ThreadPoolExecutor,
        writer: psycopg.Connection[Any],
        pool: AsyncConnectionPool,
    ) -> None:
        super().__init__(executor)
        self.url = url
        self.data_dir = data_dir
        self._writer: psycopg.Connection[Any] | None = writer
        self._pool = pool

    @classmethod
    async def open(cls, url: str, data_dir: Path, schema: str = "") -> PgDatabase:
        """Connect to ``url`` and apply ``schema`` (SQLite-dialect statements, translated).

        Raises:
            StoreUnavailable: the server cannot be reached or refused the login.
        """
        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="pg-writer")
        loop = asyncio.get_running_loop()
        try:
            writer = await loop.run_in_executor(executor, _connect, url)
            if schema:
                await loop.run_in_executor(executor, _apply_schema, writer, schema)
        except psycopg.Error as exc:
            executor.shutdown(wait=False)
            raise StoreUnavailable(f"cannot use the database {redact_url(url)}: {exc}") from exc
        pool = AsyncConnectionPool(
            url,
            min_size=1,
            max_size=4,
            open=False,
            kwargs={"autocommit": True, "connect_timeout": _CONNECT_TIMEOUT_S},
        )
        try:
            await pool.open(wait=True, timeout=_CONNECT_TIMEOUT_S)
        except psycopg.Error as exc:  # PoolTimeout is one
            await pool.close()
            await loop.run_in_executor(executor, writer.close)
            executor.shutdown(wait=False)
            raise StoreUnavailable(f"cannot use the database {redact_url(url)}: {exc}") from exc
        return cls(url, data_dir, executor, writer, pool)

    def describe(self) -> str:
        return redact_url(self.url)

    async def read(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        """Run one query on a pooled connection (autocommit: it sees every commit so far).

        Raises:
            StoreUnavailable: the server cannot be reached.
        """
        translated = pg_sql.statement(sql)
        query, values = translated.query, translated.params(params)
        for attempt in range(2):
            try:
                async with self._pool.connection() as conn:
                    cursor = await conn.execute(query, values)
                    return list(await cursor.fetchall())
            except psycopg.OperationalError as exc:
                if attempt:
                    raise StoreUnavailable(f"the database cannot be read: {exc}") from exc
        raise AssertionError("unreachable")

    async def probe(self) -> None:
        """Whether the store takes writes again: a small real write.

        Raises:
            StoreUnavailable: it still does not.
        """
        await self.write(_touch_probe)

    async def aclose(self) -> None:
        """Finish queued writes, then close every connection. Idempotent."""
        if self._closed:
            return
        await self._stop_writer()
        await self._pool.close()
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._executor, self._close_writer)
        self._executor.shutdown(wait=True)

    def _close_writer(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def _commit(self, jobs: list[Job]) -> list[Outcome]:
        for attempt in range(2):
            try:
                if self._writer is None or self._writer.closed:
                    self._writer = _connect(self.url)
                self._writer.execute("BEGIN")
                break
            except psycopg.Error as exc:
                self._close_writer_quietly()
                if attempt:
                    error = StoreUnavailable(f"the database cannot be written: {exc}")
                    return [(False, error) for _ in jobs]
        assert self._writer is not None
        return _commit_group(self._writer, jobs, begun=True)

    def _close_writer_quietly(self) -> None:
        with contextlib.suppress(psycopg.Error):
            self._close_writer()
        self._writer = None


def _connect(url: str) -> psycopg.Connection[Any]:
    conn = psycopg.connect(url, autocommit=True, connect_timeout=_CONNECT_TIMEOUT_S)
    conn.execute("SET synchronous_commit = on")
    return conn


def _apply_schema(conn: psycopg.Connection[Any], schema: str) -> None:
    pg = PgConn(conn)
    with conn.transaction():
        for statement in pg_sql.script(schema):
            pg.execute(statement)


def _commit_group(
    conn: psycopg.Connection[Any], jobs: list[Job], *, begun: bool = False
) -> list[Outcome]:
    """On the writer thread: run ``jobs`` in one transaction; on failure, each alone.

    A job that met a lock another daemon's transaction holds (:attr:`PgConn.busy`) fails
    the group at once instead of waiting mid-way (waits there, in whatever order jobs come,
    deadlock); the group then runs again with every such lock taken first, in one order
    (:meth:`PgConn.lock_first`): at most :data:`_BUSY_RUNS` times, then each job alone.
    """
    first: set[str] = set()
    error: Exception = StoreBusy("the group never ran")
    for run in range(_BUSY_RUNS):
        pg = PgConn(conn)
        try:
            if run or not begun:
                conn.execute("BEGIN")
            pg.lock_first(first)
            results = [job(pg) for job in jobs]
            if pg.busy:  # a job caught the error: the transaction is aborted all the same
                raise StoreBusy(f"{', '.join(sorted(pg.busy))} held by another transaction")
            conn.execute("COMMIT")
            return [(True, r) for r in results]
        except Exception as exc:
            with contextlib.suppress(psycopg.Error):
                conn.execute("ROLLBACK")
            error = exc
        if conn.closed or not pg.busy:
            break
        first |= pg.busy
    if len(jobs) == 1 or conn.closed:
        return [(False, _as_error(error)) for _ in jobs]
    return [_commit_group(conn, [job])[0] for job in jobs]


def _touch_probe(conn: Any) -> None:
    conn.execute("CREATE TABLE IF NOT EXISTS store_probe (id INTEGER PRIMARY KEY, ts REAL)")
    conn.execute(
        "INSERT INTO store_probe (id, ts) VALUES (1, 0)"
        " ON CONFLICT (id) DO UPDATE SET ts = store_probe.ts + 1"
    )


def _as_error(exc: Exception) -> Exception:
    if isinstance(exc, psycopg.OperationalError):
        log.error("database write failed: %s", exc)
        return StoreUnavailable(f"the database cannot be written: {exc}")
    if isinstance(exc, psycopg.Error):
        log.error("database write failed: %s", exc)
        return StoreError(f"database write failed: {exc}")
    return exc  # the job's own error (a refused op, a usage problem) passes through as is
