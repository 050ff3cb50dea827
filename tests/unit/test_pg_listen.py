"""``bot.pg_listen.PgListener`` on a real PostgreSQL: notifications arrive after commit only,
a killed connection comes back and tells its subscribers to catch up, close is clean."""

from __future__ import annotations

import asyncio

import psycopg

from bot.pg_listen import PgListener
from tests.fakes.postgres import Postgres
from tests.unit.pipeline_env import wait_until


def send(url: str, channel: str, payload: str, *, commit: bool = True) -> None:
    with psycopg.connect(url) as conn:
        conn.execute("SELECT pg_notify(%s, %s)", (channel, payload))
        if commit:
            conn.commit()
        else:
            conn.rollback()


async def test_committed_notifications_arrive_and_rolled_back_ones_never(
    postgres: Postgres,
) -> None:
    url = postgres.new_database()
    got: list[str] = []
    connects: list[int] = []
    listener = PgListener(url)
    listener.subscribe("musher_test", got.append, lambda: connects.append(1))
    await listener.start()
    try:
        await wait_until(lambda: bool(connects))
        await asyncio.to_thread(send, url, "musher_test", "dropped", commit=False)
        await asyncio.to_thread(send, url, "musher_test", "one")
        await asyncio.to_thread(send, url, "other_channel", "not ours")
        await asyncio.to_thread(send, url, "musher_test", "two")
        await wait_until(lambda: len(got) >= 2)
        await asyncio.sleep(0.3)
        assert got == ["one", "two"]
    finally:
        await listener.aclose()
    await asyncio.to_thread(send, url, "musher_test", "after close")
    await asyncio.sleep(0.3)
    assert got == ["one", "two"]


async def test_a_killed_connection_reconnects_and_calls_on_connect_again(
    postgres: Postgres,
) -> None:
    url = postgres.new_database()
    got: list[str] = []
    connects: list[int] = []
    late: list[int] = []
    listener = PgListener(url)
    listener.subscribe("musher_test", got.append, lambda: connects.append(1))
    await listener.start()
    try:
        await wait_until(lambda: bool(connects))
        listener.subscribe("musher_late", got.append, lambda: late.append(1))
        await wait_until(lambda: bool(late))  # a subscriber added after start is caught up too

        await asyncio.to_thread(postgres.terminate_others)
        await wait_until(lambda: len(connects) >= 2 and len(late) >= 2)
        assert listener.connects >= 2
        await asyncio.to_thread(send, url, "musher_test", "after reconnect")
        await asyncio.to_thread(send, url, "musher_late", "late one")
        await wait_until(lambda: len(got) >= 2)
        assert sorted(got) == ["after reconnect", "late one"]
    finally:
        await listener.aclose()


async def test_a_server_that_is_not_there_is_retried_without_raising() -> None:
    listener = PgListener("postgresql://nobody@127.0.0.1:9/none?connect_timeout=1")
    listener.subscribe("musher_test", lambda _: None, lambda: None)
    await listener.start()
    await asyncio.sleep(0.5)
    await listener.aclose()  # nothing raised, nothing left running
    assert listener.connects == 0
