"""``audit verify`` reads one snapshot of the log and the tables, and writes go on meanwhile.

The verify below is held inside its read (a storage wrapper pauses the job verify hands in,
whichever way it reads) while a person in a room runs a command: the command must be
answered — its journal write and its op commit — while the verify still holds its read, and
the verify must then report the log exactly as it was when its read began.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from bot.db import Database
from bot.llm.simple import EchoProvider
from pipeline.audit import verify
from tests.fakes.chat_room import chat_room

T = TypeVar("T")
Job = Callable[[sqlite3.Connection], T]


class PausedReads:
    """``db`` for verify, except that the job verify reads with (by ``snapshot`` or by
    ``write``) stops after it has read, until :attr:`release` is set."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.inside = threading.Event()
        self.release = threading.Event()

    def _paused(self, job: Job[T]) -> Job[T]:
        def run(conn: sqlite3.Connection) -> T:
            result = job(conn)
            self.inside.set()
            self.release.wait(30)
            return result

        return run

    async def snapshot(self, job: Job[T]) -> T:
        return await self.db.snapshot(self._paused(job))

    async def write(self, job: Job[T]) -> T:
        return await self.db.write(self._paused(job))

    async def read(self, sql: str, params: tuple[Any, ...] = ()) -> Sequence[Any]:
        return await self.db.read(sql, params)


async def test_a_command_is_answered_while_verify_holds_its_read(tmp_path: Path) -> None:
    async with chat_room(tmp_path, lambda _mcp, _db: EchoProvider()) as room:
        for n in range(1, 4):
            await room.say("alice", f"new story Story {n}")
        await room.wait_for("Created #3")
        before = (await verify(room.db)).ops
        paused = PausedReads(room.db)
        verifying = asyncio.create_task(verify(paused))
        try:
            assert await asyncio.to_thread(paused.inside.wait, 30), "verify never read"
            await room.say("alice", "new story Written during the audit")
            await room.wait_for("Created #4 Written during the audit")
            assert not verifying.done()  # the verify was still holding its read all along
        finally:
            paused.release.set()
            report = await verifying
        assert report.ok, str(report)
        assert report.ops == before  # the log as it was when the read began, consistently
        after = await verify(room.db)
        assert after.ok and after.ops == before + 1
