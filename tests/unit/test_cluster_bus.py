"""Two daemons' pipelines on one real PostgreSQL (K2, E1 across daemons): each sees the
other's changes as events, once, in order, also after its LISTEN connection was killed; a
promotion or a timer that both attempt is written once."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path

from bot.cluster_bus import ClusterBus
from bot.followers import Followers
from bot.journal import Journal
from bot.pg_listen import PgListener
from pipeline.claims import unchanged
from pipeline.events import ItemChanged, ItemCreated, PipelineEvent
from pipeline.model import Backlog, Coding, SystemOrigin
from pipeline.store import TimerRecord
from pipeline.timers import Outcome, Timers
from pipeline.transitions import Start
from tests.fakes.postgres import Postgres
from tests.unit.pipeline_env import ALICE, PROJECT, PipelineEnv, pipeline_env, wait_until

DEPS = SystemOrigin("deps", "dependencies met")


@asynccontextmanager
async def node(
    url: str, directory: Path, reports: list[str]
) -> AsyncIterator[tuple[PipelineEnv, ClusterBus, Timers]]:
    """One daemon's pipeline on ``url``, with its cluster bus listening."""
    await asyncio.to_thread(directory.mkdir)
    async with AsyncExitStack() as stack:
        env = await stack.enter_async_context(pipeline_env(directory, url=url))
        timers = Timers(env.engine, report=lambda timer, text: reports.append(text))
        stack.push_async_callback(timers.aclose)
        listener = PgListener(url)
        followers = Followers(env.engine, Journal(env.db))
        bus = ClusterBus(env.db, env.store, env.engine, listener, followers=followers,
                         timers=timers)  # fmt: skip
        await bus.start()
        await listener.start()
        stack.push_async_callback(listener.aclose)
        stack.push_async_callback(bus.aclose)
        yield env, bus, timers


Node = tuple[PipelineEnv, ClusterBus, Timers]


@asynccontextmanager
async def two_nodes(
    postgres: Postgres, tmp_path: Path
) -> AsyncIterator[tuple[Node, Node, list[str]]]:
    """Daemons ``a`` and ``b`` on one new database, and the timer reports of both."""
    url = postgres.new_database()
    reports: list[str] = []
    async with node(url, tmp_path / "a", reports) as a, node(url, tmp_path / "b", reports) as b:
        yield a, b, reports


def remote(events: list[PipelineEvent]) -> list[tuple[str, int, str]]:
    out = []
    for event in events:
        if event.remote:
            what = "created" if isinstance(event, ItemCreated) else type(event).__name__
            if isinstance(event, ItemChanged):
                what = f"{type(event.from_stage).__name__}->{type(event.to_stage).__name__}"
            out.append((event.project, event.number, what))
    return out


async def test_each_daemon_sees_the_others_changes_once_and_in_order(
    postgres: Postgres, tmp_path: Path
) -> None:
    async with two_nodes(postgres, tmp_path) as ((a, _, _), (b, bus_b, _), _):
        one = await a.story("Login page")
        await a.engine.apply(PROJECT, one.number, Start(), ALICE)
        await b.story("Signup")  # b's own: told by its engine, never again by its bus
        await wait_until(lambda: len(remote(b.events)) == 2 and len(remote(a.events)) == 1)
        assert remote(b.events) == [(PROJECT, 1, "created"), (PROJECT, 1, "Backlog->Coding")]
        assert remote(a.events) == [(PROJECT, 2, "created")]
        assert [e.number for e in b.events if not e.remote] == [2]
        assert bus_b.lag() == 0


async def test_a_daemon_whose_listen_connection_dies_misses_nothing(
    postgres: Postgres, tmp_path: Path
) -> None:
    async with two_nodes(postgres, tmp_path) as ((a, _, _), (b, bus_b, _), _):
        await a.story("before")
        await wait_until(lambda: len(remote(b.events)) == 1)
        await asyncio.to_thread(postgres.terminate_others)  # every connection of both
        for title in ("while", "down", "and after"):
            await a.story(title)
        await wait_until(lambda: len(remote(b.events)) == 4)
        assert [n for _, n, _ in remote(b.events)] == [1, 2, 3, 4]
        await asyncio.sleep(0.3)
        assert len(remote(b.events)) == 4  # nothing twice
        assert bus_b.applied >= 4


async def test_a_change_both_daemons_make_at_once_is_written_once(
    postgres: Postgres, tmp_path: Path
) -> None:
    async with two_nodes(postgres, tmp_path) as ((a, _, _), (b, _, _), _):
        item = await a.story("Deploy")
        before = await b.engine.lookup(PROJECT, item.number)
        assert isinstance(before.stage, Backlog)
        results = await asyncio.gather(
            a.engine.apply(PROJECT, item.number, Start(), DEPS),
            b.engine.apply(PROJECT, item.number, Start(), DEPS),
            return_exceptions=True,
        )
        assert sum(not isinstance(r, BaseException) for r in results) == 1
        [refused] = [r for r in results if isinstance(r, BaseException)]
        assert "changed meanwhile" in str(refused) or "coding" in str(refused).lower()
        after = await a.engine.lookup(PROJECT, item.number)
        assert isinstance(after.stage, Coding)
        moves = [op for op in await a.ops() if op[1] == "item.update"]
        assert len(moves) == 1

        def stale(conn: object) -> None:
            unchanged(conn, PROJECT, before)  # type: ignore[arg-type]

        refused_again = await asyncio.gather(a.db.write(stale), return_exceptions=True)
        assert "changed meanwhile" in str(refused_again[0])


async def test_a_timer_due_on_both_daemons_fires_once(postgres: Postgres, tmp_path: Path) -> None:
    async with two_nodes(postgres, tmp_path) as ((a, _, timers_a), (b, _, timers_b), reports):
        item = await a.story("Release")
        record: TimerRecord = await timers_a.add(PROJECT, item.number, a.clock.now + 3600,
                                                 "coding", ALICE)  # fmt: skip
        gone = await b.store.timers()
        assert [t.id for t in gone] == [record.id]
        outcomes = await asyncio.gather(timers_a.fire(record.id), timers_b.fire(record.id))
        assert sorted(outcomes) == sorted([Outcome.MOVED, Outcome.GONE])
        assert [op[1] for op in await a.ops()].count("item.update") == 1
        assert await a.store.timers() == []
        assert reports == []  # a move is told by the notifier (of the daemon that fired)
        assert await timers_b.fire(record.id) is Outcome.GONE
