"""The daemon's one SQLite database: a writer with group commit and a separate reader.

Every write is a *job*: an async function that runs statements on the writer connection.
Jobs that arrive together share one transaction and one fsync (group commit); a job's
``write()`` call returns only after that transaction committed (S4). A job that raises is
retried alone in its own transaction so one bad job never sinks the others' writes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import aiosqlite

from bot.errors import StoreError

log = logging.getLogger("musher.db")

T = TypeVar("T")
Job = Callable[[aiosqlite.Connection], Awaitable[Any]]

_MAX_GROUP = 256


class Database:
    """One database file in WAL mode, ``synchronous=FULL``, written by one connection."""

    def __init__(self, path: Path, writer: aiosqlite.Connection, reader: aiosqlite.Connection):
        self.path = path
        self._writer = writer
        self._reader = reader
        self._queue: asyncio.Queue[tuple[Job, asyncio.Future[Any]] | None] = asyncio.Queue()
        self._task = asyncio.create_task(self._write_loop(), name="db-writer")
        self._closed = False

    @classmethod
    async def open(cls, path: Path, schema: str = "") -> Database:
        """Open (creating if needed) the database at ``path`` and apply ``schema``."""
        path.parent.mkdir(parents=True, exist_ok=True)
        writer = await aiosqlite.connect(path, isolation_level=None)
        await writer.execute("PRAGMA journal_mode=WAL")
        await writer.execute("PRAGMA synchronous=FULL")
        await writer.execute("PRAGMA busy_timeout=5000")
        await writer.execute("PRAGMA foreign_keys=ON")
        if schema:
            await writer.executescript(schema)
        reader = await aiosqlite.connect(path, isolation_level=None)
        await reader.execute("PRAGMA busy_timeout=5000")
        reader.row_factory = aiosqlite.Row
        with contextlib.suppress(OSError):
            os.chmod(path, 0o600)
        return cls(path, writer, reader)

    async def write(self, job: Callable[[aiosqlite.Connection], Awaitable[T]]) -> T:
        """Run ``job`` inside a transaction; return its result once the commit is durable.

        Raises:
            StoreError: the transaction could not be committed, or the job itself failed.
        If the caller is cancelled after submitting, the write still happens.
        """
        if self._closed:
            raise StoreError("the database is closed")
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait((job, future))
        return await asyncio.shield(future)

    async def read(self, sql: str, params: tuple[Any, ...] = ()) -> list[aiosqlite.Row]:
        """Run a query on the reader connection (never blocked by the writer, WAL)."""
        async with self._reader.execute(sql, params) as cursor:
            return list(await cursor.fetchall())

    async def _write_loop(self) -> None:
        closing = False
        while not closing:
            first = await self._queue.get()
            group = [] if first is None else [first]
            closing = first is None
            while len(group) < _MAX_GROUP and not closing and not self._queue.empty():
                item = self._queue.get_nowait()
                if item is None:
                    closing = True
                else:
                    group.append(item)
            if group:
                await self._commit_group(group)

    async def _commit_group(self, group: list[tuple[Job, asyncio.Future[Any]]]) -> None:
        results: list[Any] = []
        try:
            await self._writer.execute("BEGIN IMMEDIATE")
            for job, _ in group:
                results.append(await job(self._writer))
            await self._writer.execute("COMMIT")
        except asyncio.CancelledError:
            await self._rollback()
            for _, future in group:
                if not future.done():
                    future.set_exception(StoreError("the database was closed mid-write"))
            raise
        except Exception as exc:
            await self._rollback()
            if len(group) == 1:
                self._fail(group[0][1], exc)
                return
            for item in group:  # find the bad job: retry each alone
                await self._commit_group([item])
            return
        for (_, future), result in zip(group, results, strict=True):
            if not future.done():
                future.set_result(result)

    async def _rollback(self) -> None:
        with contextlib.suppress(Exception):
            await self._writer.execute("ROLLBACK")

    @staticmethod
    def _fail(future: asyncio.Future[Any], exc: Exception) -> None:
        log.error("database write failed: %s", exc)
        if not future.done():
            error = (
                exc if isinstance(exc, StoreError) else StoreError(f"database write failed: {exc}")
            )
            future.set_exception(error)

    async def aclose(self) -> None:
        """Finish queued writes, then close both connections. Idempotent."""
        if self._closed:
            return
        self._closed = True
        self._queue.put_nowait(None)
        await self._task
        await self._reader.close()
        await self._writer.close()
