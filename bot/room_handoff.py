"""Hand-off and failover of rooms between the daemons of one PostgreSQL store (K2).

Any daemon journals what it receives; only the holder of a room's lease answers it.
:class:`RoomHandoff` stands between ingress and the dispatcher on PostgreSQL:

- :meth:`~RoomHandoff.submit` (ingress's ``submit``): while this node holds the room's
  lease, free text goes to the dispatcher at once; otherwise the room is *caught up*.
- Catching up a room takes its lease (acquired if free or expired; nothing happens while
  another node holds it), then reads the room's unanswered free text from the journal that
  this node has not handed to its dispatcher yet, and replays it exactly as crash recovery
  does (:meth:`bot.ingress.Ingress.replay_entries`: a turn cut short on a node that died is
  told once, then answered again) together with what waited for the lease, in journal order.
- Journalling free text notifies ``musher_journal`` with the session key
  (:mod:`bot.journal`); every node listens (:mod:`bot.pg_listen`), and the room's holder
  (or a node that let the room go within the TTL: the message may have found the lease
  still its) catches the room up, so the holder answers what another node received,
  coalesced as usual. The others leave it: the node that journalled it takes a free lease
  itself (taking it on every notification, they stole each other's rooms).
- A sweep every third of the TTL (and after every LISTEN reconnect, since NOTIFY is not
  durable) catches up each room with unanswered free text whose lease is free, expired or
  this node's: a holder that died is replaced within the TTL.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

from bot.db import Db
from bot.dispatcher import Dispatcher
from bot.journal import NOTIFY_CHANNEL, Journal, Kind, Pending
from bot.lanes import Lanes
from bot.messages import QueuedText, session_key
from bot.metrics import Metrics
from bot.pg_listen import PgListener
from bot.room_leases import PREFIX, RoomLeases
from config.errors import MusherError
from config.models import Settings
from pipeline import leases
from pipeline.storage import Conn

log = logging.getLogger("musher.handoff")

STOP_CHANNEL = "musher_stop"

Submit = Callable[[str, QueuedText], None]
Replay = Callable[[Sequence[Pending], Submit], Awaitable[int]]


@dataclass(slots=True)
class _Room:
    """A room being caught up: what waits for its lease, and whether to read again."""

    waiting: list[QueuedText] = field(default_factory=list)
    dirty: bool = False
    task: asyncio.Task[None] | None = None


class RoomHandoff:
    """One node's routing of free text by room lease."""

    def __init__(
        self, leases: RoomLeases, journal: Journal, dispatch: Submit, listener: PgListener
    ) -> None:
        self.leases = leases
        self.journal = journal
        self.dispatch = dispatch  # the dispatcher's submit
        self.listener = listener
        self.replay: Replay | None = None  # Ingress.replay_entries, once ingress exists
        self._rooms: dict[str, _Room] = {}
        self._known: set[int] = set()  # journalled here, on their way to submit()
        self._jobs: set[asyncio.Task[None]] = set()
        self._renewer: asyncio.Task[None] | None = None
        self._closed = False
        self._expiries: dict[str, asyncio.TimerHandle] = {}  # wake when another's lease ends
        # ``stop`` in a room whose turn runs on another node: stops it here (on the holder)
        self.stop_here: Callable[[str], Awaitable[None]] | None = None
        leases.work.busy.append(self.busy)

    def busy(self, session: str) -> bool:
        """Whether ``session`` is being caught up here."""
        return session in self._rooms

    def journalled(self, session: str, journal_id: int) -> None:
        """Ingress journalled free text here: it reaches :meth:`submit`, not a catch-up."""
        self._known.add(journal_id)

    def submit(self, session: str, message: QueuedText) -> None:
        """Ingress's ``submit``: dispatch now under this node's live lease, else catch up."""
        self._known.difference_update(message.journal_ids)
        if self.leases.live(session) is not None and session not in self._rooms:
            self._dispatch(session, message)
            return
        if self._closed:
            return  # shutting down: it stays unanswered in the journal for the next holder
        room = self._rooms.setdefault(session, _Room())
        room.waiting.append(message)
        self.wake(session)

    def notified(self, session: str) -> None:
        """Free text was journalled for ``session`` (on any node): catch the room up if it
        is held here, or was until lately; else the node that journalled it does."""
        if (
            self.leases.live(session) is not None
            or self.leases.released_lately(session)
            or session in self._rooms
        ):
            self.wake(session)

    def wake(self, session: str) -> None:
        """Catch ``session`` up (a notification, the sweep, a message waiting for its lease)."""
        if self._closed:
            return  # shutting down: the next holder answers it
        room = self._rooms.setdefault(session, _Room())
        room.dirty = True
        if room.task is None:
            room.task = self._spawn(self._catch_up(session, room), f"catch-up:{session}")

    async def join(self) -> None:
        """Wait until no room is being caught up here."""
        while tasks := [room.task for room in self._rooms.values() if room.task is not None]:
            await asyncio.wait(tasks)

    def _dispatch(self, session: str, message: QueuedText) -> None:
        seen = self.leases.seen(session)
        if all(i in seen for i in message.journal_ids):
            return  # already handed over under this lease
        seen.update(message.journal_ids)
        self.dispatch(session, message)

    async def _catch_up(self, session: str, room: _Room) -> None:
        try:
            while room.dirty:
                room.dirty = False
                async with self.leases.lock(session):
                    await self._catch_up_once(session, room)
        except MusherError as err:  # the sweep tries again
            log.error("catching up room %s failed: %s", session, err)
        except Exception:
            log.exception("catching up room %s failed", session)
        finally:
            if self._rooms.get(session) is room:
                del self._rooms[session]
            self.leases.forget_lock(session)

    async def _catch_up_once(self, session: str, room: _Room) -> None:
        if self.leases.live(session) is None and await self._held_elsewhere(session):
            room.waiting.clear()  # the holder was notified and answers them
            return
        if await self.leases.take(session) is None:
            room.waiting.clear()
            return
        waiting, room.waiting = room.waiting, []
        skip = self.leases.seen(session) | self._known
        skip.update(i for m in waiting for i in m.journal_ids)
        rows = [
            p
            for p in await self.journal.pending(session)
            if p.kind is Kind.TEXT and p.id not in skip
        ]  # fmt: skip
        found: list[QueuedText] = []
        if rows and self.replay is not None:
            await self.replay(rows, lambda _s, m: found.append(m))
            log.info("room %s: answering %d messages journalled elsewhere", session, len(rows))
        for message in sorted([*found, *waiting], key=lambda m: m.journal_ids[0]):
            self._dispatch(session, message)

    async def _held_elsewhere(self, session: str) -> bool:
        rows = await self.journal.db.read(
            "SELECT owner FROM leases WHERE name = ? AND expires_at > ?",
            (PREFIX + session, self.leases.now()),
        )
        return bool(rows) and rows[0][0] != self.leases.owner

    async def sweep(self) -> None:
        """Catch up every room with unanswered free text whose lease is free, expired or
        this node's, and the others the moment their lease would expire (a node that died
        is replaced within the TTL)."""
        now = self.leases.now()
        held = {
            lease.name: (lease.owner, lease.expires_at)
            for lease in await leases.holders(self.journal.db, now)
        }
        rooms = {session_key(p.transport, p.room) for p in await self.journal.pending()
                 if p.kind is Kind.TEXT}  # fmt: skip
        for session in sorted(rooms):
            owner, expires_at = held.get(PREFIX + session, (self.leases.owner, now))
            if owner == self.leases.owner:
                self.wake(session)
            else:  # look again the moment it would expire (its holder may have died)
                self._wake_at(session, expires_at - now)

    def _wake_at(self, session: str, delay: float) -> None:
        old = self._expiries.pop(session, None)
        if old is not None:
            old.cancel()

        def wake() -> None:
            self._expiries.pop(session, None)
            self.wake(session)

        self._expiries[session] = asyncio.get_running_loop().call_later(delay + 0.05, wake)

    async def stop_elsewhere(self, session: str) -> None:
        """``stop`` was said here: the room's lease holder, if another node, stops too
        (``musher_stop`` carries ``<this node's key> <session key>``)."""
        if self.leases.live(session) is not None:
            return  # the turn, if any, ran here and was stopped

        def job(conn: Conn) -> None:
            payload = f"{self.leases.owner} {session}"
            conn.execute("SELECT pg_notify(?, ?)", (STOP_CHANNEL, payload))

        await self.journal.db.write(job)

    def _stop_notified(self, payload: str) -> None:
        sender, _, session = payload.partition(" ")
        stop, live = self.stop_here, self.leases.live(session) is not None
        if sender != self.leases.owner and live and stop is not None:
            log.info("stop said in room %s on another node: stopping its turn here", session)
            self._spawn(stop(session), f"stop:{session}")

    async def start(self) -> None:
        """Listen for journalled free text and ``stop``, sweep now and every third of the
        TTL, and keep the held leases renewed."""
        self.listener.subscribe(NOTIFY_CHANNEL, self.notified, self._sweep_soon)
        self.listener.subscribe(STOP_CHANNEL, self._stop_notified, _nothing)
        await self.listener.start()
        self._spawn(self._sweep_loop(), "room-sweep")
        self._renewer = self._spawn(self.leases.run(), "room-leases")

    def _sweep_soon(self) -> None:
        self._spawn(self._sweep_logged(), "room-sweep-now")

    async def _sweep_loop(self) -> None:
        while True:
            await self._sweep_logged()
            await asyncio.sleep(self.leases.ttl / 3)

    async def _sweep_logged(self) -> None:
        try:
            await self.sweep()
        except MusherError as err:
            log.error("room sweep failed: %s", err)
        except Exception:
            log.exception("room sweep failed")

    def _spawn(self, coro: Awaitable[None], name: str) -> asyncio.Task[None]:
        task = asyncio.ensure_future(coro)
        task.set_name(name)
        self._jobs.add(task)
        task.add_done_callback(self._jobs.discard)
        return task

    async def stop_intake(self) -> None:
        """Stop listening, sweeping and catching up (shutdown, before the dispatcher)."""
        self._closed = True
        for timer in self._expiries.values():
            timer.cancel()
        await self.listener.aclose()
        for task in list(self._jobs):
            if task is not self._renewer:
                task.cancel()
        await asyncio.gather(*self._jobs - {self._renewer}, return_exceptions=True)

    async def aclose(self) -> None:
        """Stop renewing and release every held lease (after the dispatcher parked its turns:
        the other nodes take the rooms over at once)."""
        await self.stop_intake()
        if self._renewer is not None:
            self._renewer.cancel()
            await asyncio.gather(self._renewer, return_exceptions=True)
        await self.leases.aclose()


def _nothing() -> None:
    return None


def room_leases(settings: Settings, db: Db, owner: str, metrics: Metrics) -> RoomLeases | None:
    """The node's room leases on PostgreSQL; None on SQLite (one daemon holds every room)."""
    if db.backend != "postgresql":
        return None
    return RoomLeases(db, owner, settings.store.lease_ttl_s, metrics)


def room_handoff(
    leases: RoomLeases | None,
    journal: Journal,
    dispatcher: Dispatcher,
    stop_turn: Callable[[str], None],
    lanes: Lanes,
    url: str,
) -> RoomHandoff | None:
    """Route free text by room lease (None without leases): a room is busy while its batch
    coalesces, its turn runs or its lane acts; a lost lease stops the room's turn and drops
    what waited for it (unanswered, for the next holder)."""
    if leases is None:
        return None

    async def lost(session: str) -> None:
        stop_turn(session)
        await dispatcher.stop(session, discard=False)

    leases.on_lost = lost
    leases.work.busy += [dispatcher.active, lanes.busy]
    return RoomHandoff(leases, journal, dispatcher.submit, PgListener(url))
