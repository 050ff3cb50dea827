"""Leader leases for single-connection transports (K2): one node connected per account,
takeover when the leader stops, and a leader that cannot renew closes its connection before
its lease expires. Two :class:`Leadership` s share one database as two daemons would."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import pytest

from bot.db import Db
from bot.leaders import Leaders, Leadership
from bot.messages import Reply
from bot.metrics import Metrics
from bot.schema import DAEMON_SCHEMA
from bot.store_url import open_db
from bot.transport import Capabilities, FeedResult, Sink
from config.errors import StoreUnavailable
from pipeline import leases
from pipeline.storage import Conn
from tests.unit.pipeline_env import wait_until

T = TypeVar("T")
A, B = "a" * 64, "b" * 64
TTL = 0.6


class Gateway:
    """What the platform sees: which nodes are connected now, and the most at once."""

    def __init__(self) -> None:
        self.open: set[str] = set()
        self.most = 0

    def join(self, node: str) -> None:
        self.open.add(node)
        self.most = max(self.most, len(self.open))


class FakeConnection:
    """A single-connection transport that records when it is connected."""

    name = "fake"
    capabilities = Capabilities()
    identities: tuple[str, ...] = ()

    def __init__(self, node: str, gateway: Gateway, fail_connect: bool = False) -> None:
        self.node, self.gateway, self.fail_connect = node, gateway, fail_connect
        self.started = self.opened = False
        self.connects = 0
        self.closed_at: list[float] = []

    @property
    def account(self) -> str:
        return "bot-1"

    async def start(self, sink: Sink) -> None:
        self.started = True

    async def open(self, sink: Sink) -> None:
        self.opened = True

    async def connect(self) -> None:
        self.connects += 1
        if self.fail_connect:
            raise ConnectionError("the gateway refused")
        self.gateway.join(self.node)

    async def disconnect(self) -> None:
        self.gateway.open.discard(self.node)
        self.closed_at.append(time.time())

    async def send(self, session: str, reply: Reply) -> str | None:
        return None

    async def typing(self, session: str, active: bool) -> None:
        return None

    async def aclose(self) -> None:
        return None


class Cuttable:
    """The database as one node reaches it; :attr:`down` makes every call fail."""

    def __init__(self, db: Db) -> None:
        self.db, self.down = db, False

    async def write(self, job: Callable[[Conn], T]) -> T:
        if self.down:
            raise StoreUnavailable("the database cannot be written: connection refused")
        return await self.db.write(job)

    async def read(self, sql: str, params: tuple[Any, ...] = ()) -> Sequence[Any]:
        if self.down:
            raise StoreUnavailable("the database cannot be read: connection refused")
        return await self.db.read(sql, params)


class NoSink:
    async def feed(self, msg: Any) -> FeedResult:
        return FeedResult.IGNORED

    def typing(self, session: str, sender: str, seconds: float) -> None:
        return None


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Db]:
    db = await open_db(f"sqlite:///{tmp_path / 'musher.db'}", tmp_path, DAEMON_SCHEMA)
    yield db
    await db.aclose()


async def stop(run: asyncio.Task[None]) -> None:
    run.cancel()
    await asyncio.gather(run, return_exceptions=True)


async def test_one_node_connects_and_the_other_takes_over_when_it_stops(db: Db) -> None:
    gateway, metrics = Gateway(), Metrics()
    first = Leadership(db, A, FakeConnection(A, gateway), TTL, Metrics())
    second = Leadership(db, B, FakeConnection(B, gateway), TTL, metrics)
    runs = {A: asyncio.create_task(first.run()), B: asyncio.create_task(second.run())}
    await wait_until(lambda: len(gateway.open) == 1)
    await asyncio.sleep(TTL)  # renewals go on; the other keeps waiting
    [leader] = gateway.open
    assert first.name == "leader:fake:bot-1"
    roles = {first.health(), second.health()}
    assert roles == {"ok; leader (token 1)", "ok; standby"}

    await stop(runs[leader])  # a clean stop releases the lease
    other = B if leader == A else A
    await wait_until(lambda: gateway.open == {other})
    assert gateway.most == 1
    if other == B:
        assert 'musher_lease_transfers_total{kind="leader"} 1' in metrics.render()
    await stop(runs[other])
    assert not gateway.open


async def test_a_leader_cut_from_the_database_disconnects_before_its_lease_expires(
    db: Db,
) -> None:
    gateway = Gateway()
    cut = Cuttable(db)
    transport = FakeConnection(A, gateway)
    first = Leadership(cut, A, transport, TTL, Metrics())
    run = asyncio.create_task(first.run())
    await wait_until(lambda: gateway.open == {A})
    await asyncio.sleep(TTL / 2)
    cut.down = True
    await wait_until(lambda: not gateway.open)
    [(expires_at,)] = await db.read("SELECT expires_at FROM leases")  # as last renewed
    assert transport.closed_at[0] < expires_at  # fenced: closed while it was still its lease
    assert first.health() == "ok; standby"

    second = Leadership(db, B, FakeConnection(B, gateway), TTL, Metrics())
    other = asyncio.create_task(second.run())
    await wait_until(lambda: gateway.open == {B})
    cut.down = False  # the first rejoins, as standby
    await asyncio.sleep(TTL)
    assert gateway.open == {B} and gateway.most == 1 and first.health() == "ok; standby"
    await stop(run)
    await stop(other)


async def test_a_renewal_refused_disconnects_at_once(db: Db) -> None:
    gateway = Gateway()
    first = Leadership(db, A, FakeConnection(A, gateway), TTL, Metrics())
    run = asyncio.create_task(first.run())
    await wait_until(lambda: gateway.open == {A})

    def steal(conn: Conn) -> None:  # another node got it (as if A's clock had run slow)
        conn.execute("UPDATE leases SET owner = ?, token = token + 1", (B,))

    await db.write(steal)
    await wait_until(lambda: not gateway.open)
    await asyncio.sleep(TTL / 2)
    assert not gateway.open and first.health() == "ok; standby"
    await stop(run)


async def test_a_connection_that_fails_lets_the_other_node_lead(db: Db) -> None:
    gateway = Gateway()
    broken = FakeConnection(A, gateway, fail_connect=True)
    first = Leadership(db, A, broken, TTL, Metrics())
    run = asyncio.create_task(first.run())
    await wait_until(lambda: broken.connects == 1)
    second = Leadership(db, B, FakeConnection(B, gateway), TTL, Metrics())
    other = asyncio.create_task(second.run())
    await wait_until(lambda: gateway.open == {B})
    await stop(run)
    await stop(other)


async def test_on_sqlite_transports_start_at_once_without_leases(db: Db) -> None:
    metrics = Metrics()
    leaders = Leaders(db, "sqlite", A, TTL, metrics)
    transport = FakeConnection(A, Gateway())
    await leaders.start(transport, NoSink())
    assert transport.started and not transport.opened
    assert leaders.health() == {} and await leases.holders(db, time.time()) == []
    assert "musher_leases_held 0" in metrics.render()
    await leaders.aclose()


async def test_on_postgresql_a_transport_is_opened_and_led(db: Db) -> None:
    metrics = Metrics()
    leaders = Leaders(db, "postgresql", A, TTL, metrics)  # the leases work on either backend
    transport = FakeConnection(A, Gateway())
    await leaders.start(transport, NoSink())
    assert transport.opened and not transport.started
    await wait_until(lambda: transport.gateway.open == {A})
    assert leaders.health() == {
        "node": f"ok; {A[:12]}…",
        "leader:fake:bot-1": "ok; leader (token 1)",
    }
    assert "musher_leases_held 1" in metrics.render()
    await leaders.aclose()
    assert not transport.gateway.open and await leases.holders(db, time.time()) == []
