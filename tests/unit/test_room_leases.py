"""One node's room leases (K2): held while the room has work, released when idle, its turn's
writes refused once the lease passed on, and a holder that cannot renew stops acting before
the lease expires by its own clock. Two nodes on one store, a fake clock where it helps."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Any, TypeVar

import pytest

from bot.db import Db
from bot.journal import Journal, Kind, Pending
from bot.messages import InboundMessage, QueuedText, session_key
from bot.metrics import Metrics
from bot.room_handoff import RoomHandoff
from bot.room_leases import RoomLeases
from config.errors import StoreUnavailable
from pipeline.leases import LeaseLost
from pipeline.storage import Conn
from tests.unit import test_leases

A, B = "a" * 64, "b" * 64
pair = test_leases.pair  # the fixture: two nodes on one store, on each backend
ROOM = "web:lobby"
T = TypeVar("T")


class FakeClock:
    def __init__(self) -> None:
        self.t = 1_800_000_000.0

    def __call__(self) -> float:
        return self.t


def node(db: Any, owner: str, clock: Any = time.time, ttl: float = 15.0) -> RoomLeases:
    nodes = RoomLeases(db, owner, ttl, Metrics(), now=clock)
    nodes.lost = []  # type: ignore[attr-defined]

    async def on_lost(session: str) -> None:
        nodes.lost.append(session)  # type: ignore[attr-defined]

    nodes.on_lost = on_lost
    return nodes


async def log_line(db: Db, fence: Any, text: str) -> None:
    def job(conn: Conn) -> None:
        fence(conn)
        conn.execute(
            "INSERT INTO room_log (session, role, sender, text, ts) VALUES (?, 'bot', 'm', ?, 0)",
            (ROOM, text),
        )

    await db.write(job)


async def test_a_room_is_held_while_it_has_work_and_released_once_idle(
    pair: tuple[Db, Db],
) -> None:
    clock = FakeClock()
    a, b = node(pair[0], A, clock), node(pair[1], B, clock)
    busy = {ROOM}
    a.work.busy.append(lambda s: s in busy)
    first = await a.take(ROOM)
    assert first is not None and await b.take(ROOM) is None
    clock.t += 10
    await a.tick()  # busy: renewed, so it outlives its first expiry
    clock.t += 10
    assert a.live(ROOM) is not None and await b.take(ROOM) is None
    busy.clear()
    await a.tick()  # idle: released at once
    assert a.held() == []
    taken = await b.take(ROOM)
    assert taken is not None and taken.token == first.token + 1
    assert b.metrics.lease_transfers.values["room"] == 1  # a changed hands
    await b.tick()  # idle on b too: released; taking it again is no transfer
    assert await b.take(ROOM) is not None
    assert b.metrics.lease_transfers.values["room"] == 1
    assert "musher_leases_held 1" in b.metrics.render()


async def test_a_turn_whose_lease_passed_on_is_refused_and_stopped(pair: tuple[Db, Db]) -> None:
    clock = FakeClock()
    a, b = node(pair[0], A, clock), node(pair[1], B, clock)
    assert await a.take(ROOM) is not None
    fence = a.fence(ROOM)
    await log_line(pair[0], fence, "answer 1")  # the holder writes
    clock.t += 20  # a froze past its expiry; b takes the room over
    assert a.live(ROOM) is None
    assert await b.take(ROOM) is not None
    assert b.metrics.lease_transfers.values["room"] == 1
    with pytest.raises(LeaseLost):
        fence.check()  # nothing more is sent
    stale = a._held[ROOM].lease  # even a node whose clock lags is refused by the store
    with pytest.raises(LeaseLost):

        def job(conn: Conn) -> None:
            from pipeline.leases import fence as store_fence

            store_fence(conn, stale, clock.t - 19)

        await pair[0].write(job)
    rows = await pair[0].read("SELECT text FROM room_log WHERE session = ?", (ROOM,))
    assert [r[0] for r in rows] == ["answer 1"]

    ran: list[str] = []

    async def turn(session: str, batch: Sequence[QueuedText]) -> None:
        ran.append(session)
        raise LeaseLost("gone")

    await a.guard_turns(turn)(ROOM, ())  # no live lease: the turn does not even start
    assert ran == []
    assert await b.take(ROOM) is not None
    b_fence_turn = b.guard_turns(turn)
    await b_fence_turn(ROOM, ())  # the turn's write refused: it ends, the room is dropped
    await asyncio.sleep(0)
    assert ran == [ROOM] and b.lost == [ROOM] and b.held() == []  # type: ignore[attr-defined]


class Failing:
    """A store whose writes fail once ``down`` is set (the database is gone)."""

    def __init__(self, db: Db) -> None:
        self.db, self.down = db, False

    async def write(self, job: Any) -> Any:
        if self.down:
            raise StoreUnavailable("the database cannot be written: gone")
        return await self.db.write(job)

    async def read(self, sql: str, params: tuple[Any, ...] = ()) -> Sequence[Any]:
        return await self.db.read(sql, params)


async def test_a_holder_that_cannot_renew_stops_before_its_lease_expires(
    pair: tuple[Db, Db],
) -> None:
    store = Failing(pair[0])
    a = node(store, A, ttl=0.9)
    a.work.busy.append(lambda s: True)
    lease = await a.take(ROOM)
    assert lease is not None
    store.down = True
    stopped_at: list[float] = []
    stopped = asyncio.Event()

    async def on_lost(session: str) -> None:
        stopped_at.append(time.time())
        stopped.set()

    a.on_lost = on_lost
    renewing = asyncio.ensure_future(a.run())
    try:
        async with asyncio.timeout(5):
            await stopped.wait()
    finally:
        renewing.cancel()
    assert stopped_at[0] < lease.expires_at  # by its own clock, before anyone may take it
    assert a.live(ROOM) is None and a.held() == []


class Unheard:
    """A LISTEN that hears nothing: the test wakes the nodes itself, as notifies would."""

    def subscribe(self, channel: str, on_notify: Any, on_connect: Any) -> None:
        return None

    async def start(self) -> None:
        return None

    async def aclose(self) -> None:
        return None


def handoff(db: Db, owner: str, clock: FakeClock) -> tuple[RoomHandoff, list[str]]:
    """A node's hand-off over ``db``; what it hands its dispatcher lands in the list."""
    dispatched: list[str] = []
    node = RoomHandoff(
        RoomLeases(db, owner, 15.0, Metrics(), now=clock),
        Journal(db),
        lambda session, message: dispatched.append(message.text),
        Unheard(),  # type: ignore[arg-type]
    )

    async def replay(rows: Sequence[Pending], submit: Any) -> int:
        for row in rows:
            submit(session_key(row.transport, row.room), QueuedText(row.sender, row.text, row.id))
        return len(rows)

    node.replay = replay
    return node, dispatched


async def receive(node: RoomHandoff, text: str) -> None:
    """``text`` arrives at ``node``: journalled there, then handed to its ``submit``."""
    msg = InboundMessage("web", "lobby", "alice", text, 0.0, text)
    recorded = await node.journal.record(msg, Kind.TEXT, text)
    assert recorded is not None
    node.journalled(ROOM, recorded[0])
    node.submit(ROOM, QueuedText("alice", text, recorded[0]))
    await node.join()


async def test_the_lease_holder_answers_what_another_node_received_once_and_in_order(
    pair: tuple[Db, Db],
) -> None:
    clock = FakeClock()
    (a, on_a), (b, on_b) = handoff(pair[0], A, clock), handoff(pair[1], B, clock)
    await receive(a, "one")  # the room was free: a takes it and answers
    await receive(b, "two")  # a holds it: b leaves it to a
    assert (on_a, on_b) == (["one"], [])
    for _ in range(2):  # the journal's notify (twice, or a sweep) wakes a: once, no repeats
        a.wake(ROOM)
        await a.join()
    await receive(a, "three")  # under a's live lease: straight to its dispatcher
    assert (on_a, on_b) == (["one", "two", "three"], [])

    clock.t += 20  # a died with all three unanswered; its lease expired
    await b.sweep()
    await b.join()
    assert on_b == ["one", "two", "three"]  # replayed on b, in journal order
    await b.sweep()
    await b.join()
    assert on_b == ["one", "two", "three"]
