"""LISTEN on PostgreSQL channels for the daemons of one cluster (K2).

:class:`PgListener` keeps one autocommit connection doing ``LISTEN`` on every subscribed
channel and hands each notification's payload to the channel's callbacks. NOTIFY is not
durable: a notification sent while the connection was down is lost, so after every
(re)connect each subscriber's ``on_connect`` runs, to catch up by reading the store. A lost
connection is retried with a growing pause (up to :data:`MAX_BACKOFF_S`); nothing here
raises to the caller after :meth:`start`.

Senders notify inside a write job (``SELECT pg_notify(?, ?)``): PostgreSQL delivers it at
commit, and never for a job that was rolled back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

import psycopg
from psycopg import sql

log = logging.getLogger("musher.pg_listen")

MAX_BACKOFF_S = 5.0
_CONNECT_TIMEOUT_S = 10


class PgListener:
    """One autocommit psycopg AsyncConnection doing LISTEN, reconnecting with backoff."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._subscribers: dict[str, list[tuple[Callable[[str], None], Callable[[], None]]]] = {}
        self._task: asyncio.Task[None] | None = None
        self._connected = asyncio.Event()
        self._pause = 0.2

    def subscribe(
        self, channel: str, on_notify: Callable[[str], None], on_connect: Callable[[], None]
    ) -> None:
        """Call ``on_notify(payload)`` for each notification on ``channel``, and
        ``on_connect()`` after every (re)connect (catch up: notifications were missed).
        Subscribe before :meth:`start`."""
        self._subscribers.setdefault(channel, []).append((on_notify, on_connect))

    async def start(self) -> None:
        """Start listening; returns once the first connection listens (or failed once: it
        keeps trying in the background)."""
        self._task = asyncio.get_running_loop().create_task(self._run(), name="pg-listen")
        waiter = asyncio.ensure_future(self._connected.wait())
        await asyncio.wait({waiter, self._task}, timeout=_CONNECT_TIMEOUT_S,
                           return_when=asyncio.FIRST_COMPLETED)  # fmt: skip
        waiter.cancel()

    async def aclose(self) -> None:
        """Stop listening and close the connection. Idempotent."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self) -> None:
        while True:
            try:
                await self._listen()
            except (psycopg.Error, OSError) as err:
                log.warning("LISTEN connection lost (%s); retrying in %.1f s", err, self._pause)
            self._connected.set()  # start() waits no longer: the retries go on meanwhile
            await asyncio.sleep(self._pause)
            self._pause = min(MAX_BACKOFF_S, self._pause * 2)

    async def _listen(self) -> None:
        conn = await psycopg.AsyncConnection.connect(
            self.url, autocommit=True, connect_timeout=_CONNECT_TIMEOUT_S
        )
        async with conn:
            for channel in self._subscribers:
                await conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(channel)))
            self._connected.set()
            self._pause = 0.2
            for subscribers in self._subscribers.values():
                for _, on_connect in subscribers:
                    _call(on_connect)
            async for notify in conn.notifies():
                for on_notify, _ in self._subscribers.get(notify.channel, ()):
                    _call(on_notify, notify.payload)


def _call(callback: Callable[..., None], *args: str) -> None:
    try:
        callback(*args)
    except Exception:
        log.exception("a LISTEN subscriber failed")
