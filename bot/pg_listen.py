"""PostgreSQL ``LISTEN`` for the cluster (K2): one connection that wakes daemons on commits.

Senders notify inside their write job's transaction (:func:`pipeline.storage.notify`, i.e.
``SELECT pg_notify(channel, payload)``), so PostgreSQL delivers a notification only after
the commit and never for a rolled-back job. A notification is a wake-up, not a record:
NOTIFY is not durable and a dropped connection loses whatever was sent meanwhile, so every
subscriber also gets ``on_connect`` after each (re)connect and catches up by reading the
tables themselves (the op log by insertion id, the leases, …).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Callable
from typing import Any

import psycopg
from psycopg import sql

from config.base import redact_url

log = logging.getLogger("musher.pg_listen")

BACKOFF_S = (0.2, 0.5, 1.0, 2.0, 5.0)  # between reconnect attempts; the last one repeats
_CONNECT_TIMEOUT_S = 10


class PgListener:
    """One autocommit psycopg ``AsyncConnection`` doing LISTEN, reconnecting with backoff.

    Guarantees: after :meth:`start`, every channel subscribed (before or after) is listened
    to on the connection; each subscriber's ``on_connect`` runs after every (re)connect,
    once its LISTEN is in place, so a catch-up read it does then misses no later commit;
    ``on_notify(payload)`` runs for each notification on its channel, in arrival order.
    The connection's ``application_name`` is ``musher listen <pid>`` (``pg_stat_activity``).
    Callbacks run on the event loop and must not block; one that raises is logged and
    nobody else notices. Connection errors are logged and retried, never raised.
    """

    def __init__(self, url: str) -> None:
        self.url = url
        self._subs: list[tuple[str, Callable[[str], None], Callable[[], None]]] = []
        self._task: asyncio.Task[None] | None = None
        self._conn: psycopg.AsyncConnection[Any] | None = None
        self._failures = 0  # connection attempts failed in a row
        self._tried = asyncio.Event()  # set once the first attempt listens or fails
        self.connects = 0  # how many times a connection was made (1 + reconnects)

    def subscribe(
        self, channel: str, on_notify: Callable[[str], None], on_connect: Callable[[], None]
    ) -> None:
        """Deliver ``channel``'s notifications to ``on_notify``; call ``on_connect`` after
        every (re)connect (within a second, too, when the connection is already up)."""
        self._subs.append((channel, on_notify, on_connect))

    async def start(self) -> None:
        """Start listening on a named task (idempotent). Returns once the first connection
        listens, or its first attempt failed (the retries go on in the background)."""
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="pg-listen")
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(_CONNECT_TIMEOUT_S):
                    await self._tried.wait()

    async def aclose(self) -> None:
        """Stop listening and close the connection. Idempotent."""
        task, self._task = self._task, None
        await stop_task(task)
        await self._close_conn()

    # --- internals ------------------------------------------------------------------------

    async def _run(self) -> None:
        while True:
            try:
                await self._session()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # psycopg.Error mostly; never raised to callers
                delay = BACKOFF_S[min(self._failures, len(BACKOFF_S) - 1)]
                self._failures += 1
                log.warning("LISTEN on %s lost (%s); reconnecting in %.1f s",
                            redact_url(self.url), exc, delay)  # fmt: skip
                self._tried.set()
                await self._close_conn()
                await asyncio.sleep(delay)

    async def _session(self) -> None:
        """Connect, LISTEN to every channel, tell the subscribers, then deliver until the
        connection fails (raises)."""
        conn = await psycopg.AsyncConnection.connect(
            self.url, autocommit=True, connect_timeout=_CONNECT_TIMEOUT_S,
            application_name=f"musher listen {os.getpid()}",
        )  # fmt: skip
        self._conn = conn
        self.connects += 1
        self._failures = 0
        listening: set[str] = set()
        told = 0  # subscribers whose on_connect ran on this connection
        while True:
            for channel, _, _ in self._subs:
                if channel not in listening:
                    await conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(channel)))
                    listening.add(channel)
            for _, _, on_connect in self._subs[told:]:
                _call(on_connect)
            told = len(self._subs)
            self._tried.set()
            async for notice in conn.notifies(timeout=1.0):
                for channel, on_notify, _ in list(self._subs):
                    if channel == notice.channel:
                        _call(on_notify, notice.payload)
            # the timeout ended the batch: check the connection, LISTEN to new channels
            await conn.execute(b"SELECT 1")

    async def _close_conn(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                await conn.close()


async def stop_task(task: asyncio.Task[None] | None) -> None:
    """Cancel ``task`` (if any) and wait until it has stopped."""
    if task is not None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def _call(callback: Callable[..., None], *args: Any) -> None:
    try:
        callback(*args)
    except Exception:
        log.exception("LISTEN subscriber %r failed", callback)
