"""Room leases (K2, D2 across the cluster): a room's turns run only on the node holding
``room:<session key>``.

:class:`RoomLeases` is one node's side of it. :meth:`~RoomLeases.take` acquires a room's
lease (before its turn starts); every third of the TTL the renewal loop renews each held
lease while the room has work (a batch coalescing, a turn running, its lane acting) and
releases it once the room is idle. A holder that cannot renew (the database is gone) stops
acting on the room before ``expires_at`` by its own clock: a watchdog fires a sixth of the
TTL before expiry and drops the room (its turn is cancelled, its waiting messages stay
unanswered in the journal for the next holder). :meth:`~RoomLeases.fence` gives a turn's
writes their guard: a write whose lease passed on is refused with :class:`LeaseLost`, and
:meth:`~RoomLeases.guard_turns` ends such a turn at once (nothing more is sent or written).

Only built on PostgreSQL; on SQLite one daemon holds every room and none of this runs.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any

from bot.messages import QueuedText
from bot.metrics import Metrics
from config.errors import MusherError
from pipeline import leases
from pipeline.leases import Lease, LeaseLost
from pipeline.storage import Conn, Storage

log = logging.getLogger("musher.leases")

RunTurn = Callable[[str, Sequence[QueuedText]], Awaitable[None]]
PREFIX = "room:"


class RoomWork:
    """What a room is busy with on this node (the dispatcher, the lanes, hand-off reads)."""

    def __init__(self, *busy: Callable[[str], bool]) -> None:
        self.busy = list(busy)

    def active(self, session: str) -> bool:
        return any(check(session) for check in self.busy)


@dataclass(slots=True)
class _Held:
    lease: Lease
    watchdog: asyncio.TimerHandle | None = None
    seen: set[int] = field(default_factory=set)  # journal ids handed to the dispatcher


class RoomFence:
    """A turn's guard for one room: :meth:`check` before acting outside the store (sending),
    and ``fence(conn)`` inside each write job the turn makes."""

    def __init__(self, owner: RoomLeases, session: str) -> None:
        self.owner, self.session = owner, session

    def check(self) -> Lease:
        """The room's lease, if this node may still act on it by its own clock.

        Raises:
            LeaseLost: it may not.
        """
        lease = self.owner.live(self.session)
        if lease is None:
            raise LeaseLost(f"lease {PREFIX}{self.session} is no longer ours")
        return lease

    def __call__(self, conn: Conn) -> None:
        leases.fence(conn, self.check(), self.owner.now())


class RoomLeases:
    """The room leases one node holds."""

    def __init__(
        self,
        storage: Storage,
        owner: str,
        ttl_s: float,
        metrics: Metrics,
        now: Callable[[], float] = time.time,
    ) -> None:
        self.storage, self.owner, self.ttl = storage, owner, ttl_s
        self.now = now
        self.metrics = metrics
        self.work = RoomWork()
        # stops acting on a room (its turn, what waits for it)
        self.on_lost: Callable[[str], Coroutine[Any, Any, None]] | None = None
        self._held: dict[str, _Held] = {}
        self._tokens: dict[str, int] = {}  # the last token this node held, per room
        self._locks: dict[str, asyncio.Lock] = {}
        self._released: dict[str, float] = {}  # when this node last let a room go
        metrics.leases_held.append(lambda: len(self._held))

    @property
    def margin(self) -> float:
        """How long before ``expires_at`` this node stops acting on an unrenewed lease."""
        return self.ttl / 6

    def live(self, session: str) -> Lease | None:
        """The room's lease if this node holds it and may act on it now, else None."""
        held = self._held.get(session)
        if held is None or held.lease.expires_at - self.margin <= self.now():
            return None
        return held.lease

    def held(self) -> list[str]:
        return sorted(self._held)

    def released_lately(self, session: str) -> bool:
        """Whether this node let ``session``'s lease go within the last TTL (a message
        journalled elsewhere meanwhile may have found it still held here)."""
        released = self._released.get(session)
        return released is not None and self.now() - released < self.ttl

    def seen(self, session: str) -> set[int]:
        """The journal ids handed to this node's dispatcher under the current lease."""
        held = self._held.get(session)
        return held.seen if held is not None else set()

    def lock(self, session: str) -> asyncio.Lock:
        """Serialises taking, catching up on and releasing one room."""
        lock = self._locks.get(session)
        if lock is None:
            lock = self._locks[session] = asyncio.Lock()
        return lock

    def forget_lock(self, session: str) -> None:
        """Drop ``session``'s lock once nothing uses it and the room is not held here (an
        idle room costs nothing, D5)."""
        lock = self._locks.get(session)
        if lock is not None and not lock.locked() and session not in self._held:
            del self._locks[session]

    def fence(self, session: str) -> RoomFence:
        return RoomFence(self, session)

    async def take(self, session: str) -> Lease | None:
        """This node's live lease on ``session``: renewed if held, else acquired if free or
        expired; None while another node holds it (or the store fails)."""
        if self.live(session) is not None:
            return self.live(session)
        try:
            lease = await leases.acquire(self.storage, PREFIX + session, self.owner, self.ttl,
                                         self.now())  # fmt: skip
        except MusherError as err:
            log.error("cannot take the lease of %s: %s", session, err)
            return None
        if lease is None:
            return None
        last = self._tokens.get(session)
        if lease.token > 1 and last != lease.token - 1:
            self.metrics.lease_transfers.inc("room")
            log.info("took over room %s (token %d)", session, lease.token)
        self._tokens[session] = lease.token
        old = self._held.get(session)
        seen = old.seen if old is not None and old.lease.token == lease.token else set()
        self._keep(session, _Held(lease, seen=seen))
        return lease

    def _keep(self, session: str, held: _Held) -> None:
        old = self._held.get(session)
        if old is not None and old.watchdog is not None:
            old.watchdog.cancel()
        delay = held.lease.expires_at - self.margin - self.now()
        loop = asyncio.get_running_loop()
        held.watchdog = loop.call_later(max(0.0, delay), self._expire, session, held)
        self._held[session] = held

    def _expire(self, session: str, held: _Held) -> None:
        """Watchdog: the lease was not renewed in time; stop acting before it can pass on."""
        if self._held.get(session) is held:
            log.error("lease of room %s not renewed in time; stopping work on it", session)
            self.drop(session)

    def drop(self, session: str) -> None:
        """Forget ``session``'s lease at once and stop acting on the room (in the background)."""
        held = self._held.pop(session, None)
        if held is not None and held.watchdog is not None:
            held.watchdog.cancel()
        if self.on_lost is not None:
            asyncio.get_running_loop().create_task(self.on_lost(session), name=f"lost:{session}")

    async def tick(self) -> None:
        """Renew each held lease of a room with work; release the idle ones."""
        now = self.now()
        for session, released in list(self._released.items()):
            if now - released >= self.ttl:
                del self._released[session]
        for session in list(self._held):
            async with self.lock(session):
                held = self._held.get(session)
                if held is None:
                    continue
                if self.work.active(session):
                    await self._renew(session, held)
                else:
                    await self._release(session, held)
            self.forget_lock(session)

    async def _renew(self, session: str, held: _Held) -> None:
        try:
            lease = await leases.renew(self.storage, held.lease, self.ttl, self.now())
        except LeaseLost:
            log.error("lease of room %s passed to another node; stopping work on it", session)
            self.drop(session)
        except MusherError as err:  # the watchdog stops the room if this lasts
            log.error("cannot renew the lease of room %s: %s", session, err)
        else:
            if self._held.get(session) is held:
                self._keep(session, _Held(lease, seen=held.seen))

    async def _release(self, session: str, held: _Held) -> None:
        del self._held[session]
        self._released[session] = self.now()
        if held.watchdog is not None:
            held.watchdog.cancel()
        try:
            await leases.release(self.storage, held.lease)
        except MusherError as err:  # it expires on its own
            log.error("cannot release the lease of room %s: %s", session, err)

    async def run(self) -> None:
        """Renew and release every third of the TTL until cancelled."""
        while True:
            await asyncio.sleep(self.ttl / 3)
            try:
                await self.tick()
            except Exception:  # a bug, not the store (that is handled per lease): go on
                log.exception("renewing room leases failed")

    async def aclose(self) -> None:
        """Release every lease (shutdown: the rooms are free for the other nodes at once)."""
        for session, held in list(self._held.items()):
            await self._release(session, held)

    def guard_turns(self, run_turn: RunTurn) -> RunTurn:
        """``run_turn`` run only under the room's live lease; a turn whose lease was lost
        ends (logged), and the room is dropped: its messages stay for the next holder."""

        async def guarded(session: str, batch: Sequence[QueuedText]) -> None:
            if self.live(session) is None:
                log.warning("no live lease on room %s; its turn is left to the holder", session)
                self.drop(session)
                return
            try:
                await run_turn(session, batch)
            except LeaseLost as err:
                log.error("turn in room %s stopped: %s", session, err)
                self.drop(session)

        return guarded
