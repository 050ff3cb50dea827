"""Leader leases (K2): a single-connection transport runs on one daemon per account.

The Discord gateway, Slack Socket Mode and the Matrix sync loop each hold one long-lived
connection per account; two daemons connected at once would take every message twice. On
PostgreSQL every daemon opens such a transport (it can send and take webhooks) and a
:class:`Leadership` per account tries the lease ``leader:<transport>:<account>``
(:mod:`pipeline.leases`): the holder connects; the others try again every third of
``[store] lease_ttl_s``, or as soon as the holder's lease runs out if sooner. The holder
renews every third of the TTL; when a renewal is refused (the lease passed on) it
disconnects at once, and when renewals fail (the database is unreachable) it disconnects
once two thirds of the TTL have passed since the last renewal, so the connection is closed
before ``expires_at`` and before another node may take over (fencing). The new leader
connects and resumes from the position stored in the shared database (Matrix's
``next_batch``; Discord and Slack reconnect as after a restart). A clean shutdown releases
the lease, so another node takes over at its next try.

On SQLite (one daemon) :meth:`Leaders.start` just starts the transport.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable

from bot.metrics import Metrics
from bot.transport import SingleConnection, Sink, Transport
from config.errors import MusherError
from pipeline import leases
from pipeline.leases import Lease, LeaseLost
from pipeline.storage import Storage

log = logging.getLogger("musher.leaders")

KIND = "leader"
RETRY_S = 0.5  # how soon a failed renewal is tried again, while there is time
EXPIRY_SLACK_S = 0.05  # a standby tries this long after the holder's lease runs out
_EXPIRY = "SELECT expires_at FROM leases WHERE name = ?"


class Leadership:
    """This node's part in the leader lease of one transport account."""

    def __init__(
        self,
        storage: Storage,
        owner: str,
        transport: SingleConnection,
        ttl_s: float,
        metrics: Metrics,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.storage, self.owner, self.transport = storage, owner, transport
        account = f":{transport.account}" if transport.account else ""
        self.name = f"leader:{transport.name}{account}"
        self.ttl_s, self.every = ttl_s, ttl_s / 3
        self.metrics, self.clock = metrics, clock
        self.lease: Lease | None = None
        self.wanted: Callable[[], Awaitable[bool]] | None = None  # tried only while true
        self._connecting: asyncio.Task[None] | None = None

    def health(self) -> str:
        """For ``/readyz``: ``ok; leader (token N)`` or ``ok; standby``."""
        if self.lease is None:
            return "ok; standby"
        return f"ok; leader (token {self.lease.token})"

    async def run(self) -> None:
        """Try, hold and renew the lease until cancelled; then step down and release it."""
        try:
            while True:  # a timed loop: each step says when the next is due
                delay = await (self._renew() if self.lease else self._try())
                await asyncio.sleep(delay)
        finally:
            if self.lease is not None:
                await self._step_down("this daemon is stopping", release=True)

    async def _try(self) -> float:
        try:
            if self.wanted is not None and not await self.wanted():
                return self.every
            lease = await leases.acquire(
                self.storage, self.name, self.owner, self.ttl_s, self.clock()
            )
        except MusherError as err:
            log.warning("%s: cannot try the lease: %s", self.name, err)
            return self.every
        if lease is None:
            return await self._until_expiry()
        if lease.token > 1:
            self.metrics.lease_transfers.inc(KIND)
        self.lease = lease
        log.info("%s: this node leads (token %d); connecting", self.name, lease.token)
        self._connecting = asyncio.create_task(self.transport.connect(), name=self.name)
        return self.every

    async def _until_expiry(self) -> float:
        """The next try: when the holder's lease runs out, if that is sooner than a third
        of the TTL (a dead holder's account is taken over without waiting for the turn)."""
        try:
            rows = await self.storage.read(_EXPIRY, (self.name,))
        except MusherError:
            return self.every
        left = float(rows[0][0]) - self.clock() if rows else 0.0
        return min(self.every, max(left, 0.0) + EXPIRY_SLACK_S)

    async def _renew(self) -> float:
        assert self.lease is not None
        if (err := _failure(self._connecting)) is not None:
            log.error("%s: the connection failed: %s; letting another node try", self.name, err)
            await self._step_down("the connection failed", release=True)
            return 3 * self.every
        deadline = self.lease.expires_at - self.every  # leaves a third of the TTL to close
        try:
            renewal = leases.renew(self.storage, self.lease, self.ttl_s, self.clock())
            self.lease = await asyncio.wait_for(renewal, max(deadline - self.clock(), 0.001))
            return self.every
        except LeaseLost:
            await self._step_down("the lease passed to another node", release=False)
            return self.every
        except (MusherError, TimeoutError) as err:
            if self.clock() < deadline:
                log.warning("%s: renewing failed (%s); trying again", self.name, err)
                return min(RETRY_S, deadline - self.clock())
            await self._step_down(f"cannot renew the lease ({str(err) or 'timed out'})", False)
            return self.every

    async def _step_down(self, reason: str, release: bool) -> None:
        lease, self.lease = self.lease, None
        log.warning("%s: disconnecting: %s", self.name, reason)
        if self._connecting is not None and not self._connecting.done():
            self._connecting.cancel()
            await asyncio.gather(self._connecting, return_exceptions=True)
        self._connecting = None
        try:
            await asyncio.wait_for(self.transport.disconnect(), self.every)
        except Exception as err:  # intake stopped first thing; a slow close is only logged
            log.error("%s: closing the connection: %s", self.name, err or "timed out")
        if release and lease is not None:
            with contextlib.suppress(MusherError):
                await leases.release(self.storage, lease)


def _failure(task: asyncio.Task[None] | None) -> BaseException | None:
    if task is None or not task.done() or task.cancelled():
        return None
    return task.exception()


class Leaders:
    """Starts the daemon's transports: single connections under leader leases on
    PostgreSQL, everything else (and everything on SQLite) at once."""

    def __init__(
        self,
        storage: Storage,
        backend: str,
        owner: str,
        ttl_s: float,
        metrics: Metrics,
    ) -> None:
        self.storage, self.owner, self.ttl_s, self.metrics = storage, owner, ttl_s, metrics
        self.clustered = backend == "postgresql"
        self.roles: list[Leadership] = []
        self._runs: list[asyncio.Task[None]] = []
        if self.clustered:
            metrics.leases_held.append(self.held)

    async def start(self, transport: Transport, sink: Sink) -> None:
        """Start ``transport``: connected at once, or under its account's leader lease."""
        if not (self.clustered and isinstance(transport, SingleConnection)):
            await transport.start(sink)
            return
        await transport.open(sink)
        if not transport.account:  # no single connection in this configuration
            await transport.connect()
            return
        role = Leadership(self.storage, self.owner, transport, self.ttl_s, self.metrics)
        self.roles.append(role)
        self._runs.append(asyncio.create_task(role.run(), name=f"lease {role.name}"))

    def lead(
        self, role: SingleConnection, wanted: Callable[[], Awaitable[bool]]
    ) -> Leadership | None:
        """On PostgreSQL: run ``role`` (a cluster-wide duty, not a transport: ``account``
        empty) under its own leader lease ``leader:<role.name>``, connected while held; the
        lease is tried only while ``wanted()`` (held, it is kept). None on SQLite, where
        nothing of this runs."""
        if not self.clustered:
            return None
        leadership = Leadership(self.storage, self.owner, role, self.ttl_s, self.metrics)
        leadership.wanted = wanted
        self.roles.append(leadership)
        self._runs.append(asyncio.create_task(leadership.run(), name=f"lease {leadership.name}"))
        return leadership

    def held(self) -> float:
        return float(sum(role.lease is not None for role in self.roles))

    def health(self) -> dict[str, str]:
        """On PostgreSQL: ``{"node": "ok; <key prefix>", "leader:<transport>:<account>":
        "ok; leader (token N)" | "ok; standby", …}`` (the key as ``musher nodes`` shows it)."""
        if not self.clustered:
            return {}
        roles = {role.name: role.health() for role in self.roles}
        return {"node": f"ok; {self.owner[:12]}…", **roles}

    async def aclose(self) -> None:
        """Disconnect what this node leads and release its leases (before the transports
        close), so another node takes over at its next try."""
        for run in self._runs:
            run.cancel()
        await asyncio.gather(*self._runs, return_exceptions=True)
        self._runs.clear()
