"""Leases with fencing tokens and node heartbeats (K2), on both store backends, each test
with two separate connections to one database racing as two daemons would."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.cli import main
from bot.db import Db
from bot.schema import DAEMON_SCHEMA
from bot.store_url import open_db
from pipeline import leases, nodes
from pipeline.leases import Lease, LeaseLost
from pipeline.storage import Conn

A, B = "a" * 64, "b" * 64
TTL = 15.0
T0 = 1_800_000_000.0


@pytest.fixture
async def pair(store_url: str, tmp_path: Path) -> AsyncIterator[tuple[Db, Db]]:
    first = await open_db(store_url, tmp_path, DAEMON_SCHEMA)
    second = await open_db(store_url, tmp_path, DAEMON_SCHEMA)
    yield first, second
    await first.aclose()
    await second.aclose()


async def fenced_write(db: Db, lease: Lease, now: float, value: str) -> None:
    """A write that only the lease's holder may make (here: a transport_state row)."""

    def job(conn: Conn) -> None:
        leases.fence(conn, lease, now)
        conn.execute(
            "INSERT INTO transport_state (transport, key, value) VALUES ('t', 'k', ?)"
            " ON CONFLICT (transport, key) DO UPDATE SET value = excluded.value",
            (value,),
        )

    await db.write(job)


async def test_two_nodes_racing_for_a_lease_get_exactly_one_holder(pair: tuple[Db, Db]) -> None:
    first, second = pair
    for round_ in range(10):
        name, now = f"room:web:r{round_}", T0 + round_
        got = await asyncio.gather(
            leases.acquire(first, name, A, TTL, now), leases.acquire(second, name, B, TTL, now)
        )
        winners = [lease for lease in got if lease is not None]
        assert len(winners) == 1 and winners[0].token == 1
    held = await leases.holders(first, T0 + 10)
    assert len(held) == 10 and {lease.owner for lease in held} <= {A, B}


async def test_an_expired_lease_passes_on_with_a_higher_token_and_fences_the_old_holder(
    pair: tuple[Db, Db],
) -> None:
    first, second = pair
    old = await leases.acquire(first, "room:web:lobby", A, TTL, T0)
    assert old is not None
    assert await leases.acquire(second, "room:web:lobby", B, TTL, T0 + 5) is None
    await fenced_write(first, old, T0 + 5, "from A")
    same = await leases.acquire(first, "room:web:lobby", A, TTL, T0 + 6)  # own: renewed
    assert same is not None and same.token == old.token and same.expires_at == T0 + 6 + TTL

    later = T0 + 6 + TTL  # A stopped renewing
    new = await leases.acquire(second, "room:web:lobby", B, TTL, later)
    assert new is not None and (new.owner, new.token) == (B, old.token + 1)
    with pytest.raises(LeaseLost):
        await leases.renew(first, same, TTL, later)
    with pytest.raises(LeaseLost):  # the old holder's write is refused, nothing written
        await fenced_write(first, same, later - 1, "stale A")
    await fenced_write(second, new, later, "from B")
    rows = await first.read("SELECT value FROM transport_state WHERE transport = 't'")
    assert [r[0] for r in rows] == ["from B"]


async def test_renew_and_release(pair: tuple[Db, Db]) -> None:
    first, second = pair
    lease = await leases.acquire(first, "leader:matrix:@bot:x", A, TTL, T0)
    assert lease is not None
    renewed = await leases.renew(first, lease, TTL, T0 + 10)
    assert renewed.expires_at == T0 + 10 + TTL and renewed.token == lease.token
    assert await leases.acquire(second, lease.name, B, TTL, T0 + 20) is None  # still A's
    await leases.release(first, renewed)
    taken = await leases.acquire(second, lease.name, B, TTL, T0 + 21)
    assert taken is not None and taken.token == lease.token + 1  # tokens never fall
    await leases.release(first, renewed)  # A's stale release changes nothing
    assert await leases.holders(second, T0 + 22) == [taken]


async def test_nodes_heartbeat(pair: tuple[Db, Db]) -> None:
    first, second = pair
    await nodes.heartbeat(first, A, "alpha", "daemon", T0)
    await nodes.heartbeat(second, B, "beta", "agent", T0 + 1)
    await nodes.heartbeat(first, A, "alpha", "daemon", T0 + 5)
    assert [(n.name, n.role, n.started_at, n.heartbeat_at) for n in await nodes.nodes(second)] == [
        ("alpha", "daemon", T0, T0 + 5),
        ("beta", "agent", T0 + 1, T0 + 1),
    ]


async def test_musher_nodes_lists_each_node_its_trust_and_its_leases(
    pair: tuple[Db, Db], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    first, _ = pair
    now = time.time()
    await nodes.heartbeat(first, A, "alpha", "daemon", now - 3)
    await nodes.heartbeat(first, B, "beta", "agent", now - 40)
    await leases.acquire(first, "room:web:lobby", A, TTL, now)
    await leases.acquire(first, "leader:slack:T1", A, TTL, now)
    await leases.acquire(first, "room:web:gone", B, TTL, now - 100)  # expired: not listed
    config = tmp_path / "bot.toml"
    config.write_text(f'[store]\nurl = "{first.url}"\ntrusted_keys = ["{B}"]\n')

    assert await asyncio.to_thread(main, ["nodes", "--config", str(config)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2
    assert lines[0].startswith(f"alpha  {A[:12]}…  daemon  untrusted  heartbeat 3 s ago")
    assert lines[0].endswith("leases: leader:slack:T1, room:web:lobby")
    assert lines[1].startswith(f"beta  {B[:12]}…  agent  trusted  heartbeat 40 s ago")
    assert lines[1].endswith("leases: none")


async def test_a_lease_held_around_work_is_renewed_while_it_runs_and_released_after(
    pair: tuple[Db, Db],
) -> None:
    first, second = pair
    now = [T0]
    async with leases.holding(first, "merge:app", A, 0.3, lambda: now[0]) as held:
        assert held is not None
        async with leases.holding(second, "merge:app", B, 0.3, lambda: now[0]) as other:
            assert other is None  # and nothing of B's is held or released
        now[0] = T0 + 0.2  # the first expiry is near: the holder renews

        async def expiries() -> list[float]:
            return [h.expires_at for h in await leases.holders(second, now[0])]

        async with asyncio.timeout(10):
            while await expiries() != [T0 + 0.5]:  # noqa: ASYNC110 - another task renews
                await asyncio.sleep(0.02)
        assert await leases.acquire(second, "merge:app", B, TTL, T0 + 0.4) is None
    taken = await leases.acquire(second, "merge:app", B, TTL, T0 + 0.4)
    assert taken is not None and taken.token == held.token + 1
