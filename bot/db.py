"""The daemon's one SQLite database: a writer thread with group commit, and an async reader.

Every write is a *job*: a plain function ``job(conn) -> T`` run on the writer's own
thread with its ``sqlite3.Connection``. Jobs that arrive together share one transaction and
one fsync (group commit) and cost one thread hop for the whole group; ``write()`` returns
only after that transaction committed (S4). A job that raises is retried alone in its own
transaction, so one bad job never sinks the others' writes. Reads go through a separate
aiosqlite connection, which WAL never blocks behind the writer; a long read of many tables
(``audit verify``) takes a :meth:`Database.snapshot` on a connection of its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import queue
import shutil
import sqlite3
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Protocol, TypeVar

import aiosqlite

from bot.store_health import StoreHealth
from config.errors import StoreError, StoreUnavailable
from pipeline.storage import Conn, Storage

log = logging.getLogger("musher.db")

T = TypeVar("T")
Job = Callable[[Any], Any]
Outcome = tuple[bool, Any]  # (ok, result or exception)

_MAX_GROUP = 256
PROBE_MIN_FREE = 1 << 20


class Db(Storage, Protocol):
    """What the daemon needs of its database, on either backend: :class:`Database`
    (SQLite) or :class:`bot.pgdb.PgDatabase` (PostgreSQL). See :mod:`pipeline.storage`."""

    backend: str
    url: str  # as ``[store] url`` names it (``describe()`` to show it: no password)
    data_dir: Path  # the daemon's own files (keys, daemon.json, worktrees) live here
    health: StoreHealth

    def describe(self) -> str: ...

    async def probe(self) -> None: ...

    async def aclose(self) -> None: ...


class GroupWriter:
    """The writer half every backend shares: jobs queue up, and each group that arrived
    together runs as one transaction on the backend's own writer thread (``_commit``).

    The writer thread takes the queued jobs itself (a plain thread-safe queue), so the
    next group starts as soon as the last commit is done, without waiting for the event
    loop; the loop only hears back once per group, with every result at once.
    """

    backend = ""

    def __init__(self, executor: ThreadPoolExecutor) -> None:
        self._executor = executor  # the backend's own thread: connect and close run there
        self._loop = asyncio.get_running_loop()
        self._jobs: queue.SimpleQueue[tuple[Job, asyncio.Future[Any]] | None] = queue.SimpleQueue()
        self._stopped: asyncio.Future[None] = self._loop.create_future()
        self._closed = False
        self.health = StoreHealth()
        name = f"{self.backend or 'db'}-group-writer"
        self._thread = threading.Thread(target=self._write_loop, name=name, daemon=True)
        self._thread.start()

    async def write(self, job: Callable[[Conn], T]) -> T:
        """Run ``job`` inside a transaction; return its result once the commit is durable.

        Raises:
            StoreError: the transaction could not be committed, or the job itself failed
                (its own ``MusherError``/``PipelineError`` subclasses pass through as they are).
        If the caller is cancelled after submitting, the write still happens.
        """
        if self._closed:
            raise StoreError("the database is closed")
        future: asyncio.Future[T] = self._loop.create_future()
        self._jobs.put((job, future))
        # No shield needed: a cancelled caller cancels only its future; the job stays queued
        # and the writer skips setting a result on a future that is already done.
        return await future

    def _commit(self, jobs: list[Job]) -> list[Outcome]:
        """On the writer thread: run ``jobs`` in one transaction; on failure, each alone."""
        raise NotImplementedError

    def _write_loop(self) -> None:
        """The writer thread: take what is queued (up to ``_MAX_GROUP`` jobs), commit it as
        one group, hand the outcomes to the loop; until :meth:`_stop_writer`."""
        closing = False
        while not closing:
            first = self._jobs.get()
            group = [] if first is None else [first]
            closing = first is None
            while len(group) < _MAX_GROUP and not closing:
                try:
                    item = self._jobs.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    closing = True
                else:
                    group.append(item)
            if group:
                outcomes = self._commit([job for job, _ in group])
                self._to_loop(self._settle, group, outcomes)
        self._to_loop(_resolve, self._stopped)

    def _to_loop(self, callback: Callable[..., None], *args: Any) -> None:
        with contextlib.suppress(RuntimeError):  # the loop is gone: nobody is waiting
            self._loop.call_soon_threadsafe(callback, *args)

    def _settle(
        self, group: list[tuple[Job, asyncio.Future[Any]]], outcomes: list[Outcome]
    ) -> None:
        """On the loop: give each job's caller its result."""
        self.health.observe(outcomes)
        for (_, future), (ok, value) in zip(group, outcomes, strict=True):
            if future.done():
                continue
            if ok:
                future.set_result(value)
            else:
                future.set_exception(value)

    async def _stop_writer(self) -> None:
        """Finish queued writes and stop the writer thread (the caller closes connections)."""
        self._closed = True
        self._jobs.put(None)
        await self._stopped


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


class Database(GroupWriter):
    """One database file in WAL mode with ``synchronous=FULL``, written by one thread."""

    backend = "sqlite"

    def __init__(
        self,
        path: Path,
        executor: ThreadPoolExecutor,
        writer: sqlite3.Connection,
        reader: aiosqlite.Connection,
    ) -> None:
        super().__init__(executor)
        self.path = path
        self.url = f"sqlite:///{path}"
        self.data_dir = path.parent
        self._writer = writer
        self._reader = reader

    @classmethod
    async def open(cls, path: Path, schema: str = "") -> Database:
        """Open (creating if needed) the database at ``path`` and apply ``schema``."""
        path.parent.mkdir(parents=True, exist_ok=True)
        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="db-writer")
        loop = asyncio.get_running_loop()
        writer = await loop.run_in_executor(executor, _connect_writer, path, schema)
        reader = await aiosqlite.connect(path, isolation_level=None)
        await reader.execute("PRAGMA busy_timeout=5000")
        reader.row_factory = aiosqlite.Row
        with contextlib.suppress(OSError):
            os.chmod(path, 0o600)
        return cls(path, executor, writer, reader)

    def describe(self) -> str:
        """For ``/readyz`` and the logs: which database this is."""
        return self.url

    async def snapshot(self, job: Callable[[Conn], T]) -> T:
        """Run ``job`` on a connection of its own inside one read transaction.

        Everything ``job`` reads comes from one consistent snapshot (WAL), and it never
        takes the write lock: writes go on, and are acknowledged, while it runs. ``job``
        must only read. Runs in a worker thread.
        """
        return await asyncio.to_thread(_in_snapshot, self.path, job)

    async def read(self, sql: str, params: tuple[Any, ...] = ()) -> list[aiosqlite.Row]:
        """Run a query on the reader connection (never blocked by the writer, WAL).

        The query runs to its end in one step on the reader's thread: a query left open
        between its first row and the rest would hold its snapshot, and a read queued in
        between would miss writes acknowledged before it began (S4).
        """
        return list(await self._reader.execute_fetchall(sql, params))

    def _commit(self, jobs: list[Job]) -> list[Outcome]:
        return _commit_group(self._writer, jobs)

    async def probe(self) -> None:
        """Whether the store takes writes again: a small real write, on a disk with at
        least ``PROBE_MIN_FREE`` bytes free (so that the space a failed write left inside
        the WAL file does not pass for a disk that has room again).

        Raises:
            StoreUnavailable: it still does not.
        """
        free = (await asyncio.to_thread(shutil.disk_usage, self.path.parent)).free
        if free < PROBE_MIN_FREE:
            raise StoreUnavailable(f"the disk holding the database is full ({free} bytes free)")
        await self.write(_touch_probe)

    async def aclose(self) -> None:
        """Finish queued writes, then close both connections. Idempotent."""
        if self._closed:
            return
        await self._stop_writer()
        await self._reader.close()
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._executor, self._writer.close)
        self._executor.shutdown(wait=True)


def _connect_writer(path: Path, schema: str) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("PRAGMA busy_timeout=5000")
    conn.execute("PRAGMA foreign_keys=ON")
    if schema:
        conn.executescript(schema)
    return conn


def _in_snapshot(path: Path, job: Callable[[sqlite3.Connection], T]) -> T:
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA busy_timeout=5000")
        conn.execute("BEGIN")  # deferred: the first read fixes the snapshot
        try:
            return job(conn)
        finally:
            _rollback(conn)
    finally:
        conn.close()


def _commit_group(conn: sqlite3.Connection, jobs: list[Job]) -> list[Outcome]:
    """On the writer thread: run ``jobs`` in one transaction; on failure, each alone."""
    try:
        conn.execute("BEGIN IMMEDIATE")
        results = [job(conn) for job in jobs]
        conn.execute("COMMIT")
        return [(True, r) for r in results]
    except Exception as exc:
        _rollback(conn)
        if len(jobs) == 1:
            return [(False, _as_error(exc))]
    return [_commit_group(conn, [job])[0] for job in jobs]


def _rollback(conn: sqlite3.Connection) -> None:
    with contextlib.suppress(sqlite3.Error):
        conn.execute("ROLLBACK")


def _touch_probe(conn: Conn) -> None:
    conn.execute("CREATE TABLE IF NOT EXISTS store_probe (id INTEGER PRIMARY KEY, ts REAL)")
    conn.execute("INSERT OR REPLACE INTO store_probe VALUES (1, julianday('now'))")


def _as_error(exc: Exception) -> Exception:
    if isinstance(exc, sqlite3.OperationalError | sqlite3.DatabaseError) and not isinstance(
        exc, sqlite3.IntegrityError | sqlite3.ProgrammingError
    ):
        log.error("database write failed: %s", exc)
        return StoreUnavailable(f"the database cannot be written: {exc}")
    if isinstance(exc, sqlite3.Error):
        log.error("database write failed: %s", exc)
        return StoreError(f"database write failed: {exc}")
    return exc  # the job's own error (a refused op, a usage problem) passes through as is
