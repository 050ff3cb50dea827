"""A real store and engine in a temp dir, with a settable wall clock, for pipeline tests."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from bot.db import Db
from bot.schema import DAEMON_SCHEMA
from bot.store_url import open_db
from pipeline.engine import Engine
from pipeline.events import PipelineEvent
from pipeline.keys import load_or_create
from pipeline.model import Item, ItemKind, SystemOrigin, UserOrigin
from pipeline.store import OpStore

ALICE = UserOrigin("web", "alice", "lobby")
BOB = UserOrigin("web", "bob", "side")
PROJECT = "demo"


class WallClock:
    """Unix time that starts at the real time and moves only when a test says so."""

    def __init__(self) -> None:
        self.now = float(int(time.time()))

    def __call__(self) -> float:
        return self.now


@dataclass
class PipelineEnv:
    db: Db
    store: OpStore
    engine: Engine
    clock: WallClock
    events: list[PipelineEvent]

    async def story(self, title: str, depends_on: tuple[int, ...] = ()) -> Item:
        created = await self.engine.create(
            PROJECT, ItemKind.STORY, title, ALICE, depends_on=depends_on
        )
        return created.item

    async def ops(self) -> list[tuple[int, str, str]]:
        """Every op as (rowid, kind, origin JSON), in log order."""
        rows = await self.db.read("SELECT rowid, kind, origin FROM ops ORDER BY rowid")
        return [(r[0], r[1], r[2]) for r in rows]


@asynccontextmanager
async def pipeline_env(
    tmp_path: Path, timezone: str = "UTC", url: str | None = None
) -> AsyncIterator[PipelineEnv]:
    """The pipeline on the store ``url`` names (default: ``tmp_path``'s SQLite file)."""
    db = await open_db(url, tmp_path, DAEMON_SCHEMA)
    clock = WallClock()
    store = await OpStore.open(db, load_or_create(tmp_path), clock=clock)
    engine = Engine(store, clock=clock)
    origin = SystemOrigin("test", "setup")
    await engine.ensure_project(PROJECT, "/srv/demo", timezone=timezone, origin=origin)
    engine.default_project = PROJECT
    events: list[PipelineEvent] = []
    engine.subscribe(events.append)
    try:
        yield PipelineEnv(db, store, engine, clock, events)
    finally:
        await db.aclose()


async def wait_until(check: Callable[[], bool]) -> None:
    """Let the loop run until ``check()`` holds (fails the test after 10 s)."""
    async with asyncio.timeout(10):
        while not check():  # noqa: ASYNC110 - polls state other tasks change
            await asyncio.sleep(0.01)
