"""Reads see every write acknowledged before them (S4), however many reads are in flight.

The reader is one connection: a query another read left open would hold its snapshot, and a
read queued behind it would see the database as it was before a write that already returned
(the board once kept showing an agent running after ``stop`` had ended it)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from bot.db import Database

SCHEMA = "CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY, v TEXT);"


def _insert(value: int) -> Any:
    def job(conn: Any) -> None:
        conn.execute("INSERT INTO t (id, v) VALUES (?, 'x')", (value,))

    return job


async def test_a_read_after_a_write_sees_it_while_another_read_is_in_flight(
    tmp_path: Path,
) -> None:
    db = await Database.open(tmp_path / "musher.db", SCHEMA)
    try:
        await db.write(_many(20_000))  # a sort over them keeps the other read busy a while
        for n in range(1, 11):
            other = asyncio.create_task(db.read("SELECT * FROM t ORDER BY random()"))
            await asyncio.sleep(0)  # its query starts, and with it its snapshot
            await db.write(_insert(n))
            rows = await db.read("SELECT COUNT(*) FROM t WHERE id = ?", (n,))
            assert rows[0][0] == 1, f"write {n} was acknowledged but a later read missed it"
            await other
    finally:
        await db.aclose()


def _many(count: int) -> Any:
    def job(conn: Any) -> None:
        conn.executemany("INSERT INTO t (id, v) VALUES (?, 'x')", [(-n,) for n in range(count)])

    return job
