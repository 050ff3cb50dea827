"""PostgreSQL: which driver (psycopg 3 or asyncpg), and the op log on PostgreSQL vs SQLite.

Starts its own PostgreSQL (``tests/fakes/postgres.py``, ``fsync`` on, as a real install)
and measures, in one run:

* ``drivers``: the same work through each driver, the way the store runs it. Appends:
  ``WRITERS`` (32) concurrent callers, ``TXNS`` transactions in all, each an ``INSERT`` of a
  signed-op-sized row plus an ``UPDATE`` of a counter row; every driver gets one writer
  connection whose queued jobs share a transaction (group commit), as
  :class:`bot.pgdb.PgDatabase` does with psycopg (that very class is what is timed for
  psycopg: translation included). Reads: ``READS`` sequential point reads through a pool
  (psycopg's ``AsyncConnectionPool`` inside ``PgDatabase.read``, asyncpg's ``Pool``): p50/p99.
* ``oplog``: ``OpStore.append`` from 64 concurrent writers (B4's workload, ``OPS`` ops) and
  ``audit verify``, on SQLite (baseline, same run) and on PostgreSQL: appends/s of each and
  the ratios.

Asserts nothing. Run alone: ``python -m bench.pg_driver`` (``--txns``/``--ops`` to resize).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import asyncpg

from bench.common import emit, machine, percentile, progress, quiet_logs, rnd
from bench.oplog import ORIGIN, SETUP, project_of, workload
from bench.oplog import WRITERS as OPLOG_WRITERS
from bot.pgdb import PgDatabase
from bot.store_url import open_db
from pipeline.audit import verify
from pipeline.keys import NodeKey
from pipeline.ops import CreateProject
from pipeline.storage import Conn
from pipeline.store import OpStore
from tests.fakes.postgres import start_postgres

NAME = "pg_driver"
WRITERS = 32
TXNS = 4_000
READS = 2_000
OPS = 5_000
PAYLOAD = "x" * 300
SIG = os.urandom(64)
SCHEMA = """
CREATE TABLE IF NOT EXISTS bench_ops (id INTEGER PRIMARY KEY, payload TEXT NOT NULL, sig BLOB);
CREATE TABLE IF NOT EXISTS bench_items (id INTEGER PRIMARY KEY, n INTEGER NOT NULL, title TEXT);
"""


async def run_writers(append: Callable[[int], Awaitable[None]]) -> float:
    """``TXNS`` appends from ``WRITERS`` concurrent callers; returns appends/s."""

    async def writer(w: int) -> None:
        for i in range(w, TXNS, WRITERS):
            await append(i)

    start = time.perf_counter()
    await asyncio.gather(*(writer(w) for w in range(WRITERS)))
    return TXNS / (time.perf_counter() - start)


async def time_reads(read: Callable[[int], Awaitable[Any]]) -> tuple[float, float]:
    """p50 and p99 of ``READS`` sequential point reads, in microseconds."""
    samples = []
    for i in range(READS):
        start = time.perf_counter()
        await read(i % WRITERS)
        samples.append((time.perf_counter() - start) * 1e6)
    return percentile(samples, 50), percentile(samples, 99)


async def with_psycopg(url: str, data_dir: Path) -> dict[str, Any]:
    db = await PgDatabase.open(url, data_dir, SCHEMA + _ITEMS)
    try:

        async def append(i: int) -> None:
            def job(conn: Conn) -> None:
                conn.execute("INSERT INTO bench_ops (payload, sig) VALUES (?, ?)", (PAYLOAD, SIG))
                conn.execute("UPDATE bench_items SET n = n + 1 WHERE id = ?", (i % WRITERS,))

            await db.write(job)

        async def read(key: int) -> Any:
            return await db.read("SELECT id, n, title FROM bench_items WHERE id = ?", (key,))

        rate = await run_writers(append)
        p50, p99 = await time_reads(read)
    finally:
        await db.aclose()
    return {"appends_per_s": rnd(rate, 0), "read_p50_us": rnd(p50, 0), "read_p99_us": rnd(p99, 0)}


class AsyncpgGroupWriter:
    """The same group commit as ``bot.db.GroupWriter``, on one asyncpg connection."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn
        self.queue: asyncio.Queue[tuple[int, asyncio.Future[None]]] = asyncio.Queue()
        self.task = asyncio.create_task(self.loop())

    async def write(self, i: int) -> None:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.queue.put_nowait((i, future))
        await future

    async def loop(self) -> None:
        while True:
            group = [await self.queue.get()]
            while not self.queue.empty() and len(group) < 256:
                group.append(self.queue.get_nowait())
            async with self.conn.transaction():
                for i, _ in group:
                    await self.conn.execute(
                        "INSERT INTO bench_ops (payload, sig) VALUES ($1, $2)", PAYLOAD, SIG
                    )
                    await self.conn.execute(
                        "UPDATE bench_items SET n = n + 1 WHERE id = $1", i % WRITERS
                    )
            for _, future in group:
                future.set_result(None)


async def with_asyncpg(url: str, data_dir: Path) -> dict[str, Any]:
    await (await PgDatabase.open(url, data_dir, SCHEMA + _ITEMS)).aclose()  # same tables
    conn = await asyncpg.connect(url)
    pool = await asyncpg.create_pool(url, min_size=1, max_size=4)
    writer = AsyncpgGroupWriter(conn)
    try:

        async def read(key: int) -> Any:
            return await pool.fetch("SELECT id, n, title FROM bench_items WHERE id = $1", key)

        rate = await run_writers(writer.write)
        p50, p99 = await time_reads(read)
    finally:
        writer.task.cancel()
        await pool.close()
        await conn.close()
    return {"appends_per_s": rnd(rate, 0), "read_p50_us": rnd(p50, 0), "read_p99_us": rnd(p99, 0)}


_ITEMS = "".join(
    f"INSERT INTO bench_items (id, n, title) VALUES ({i}, 0, 'item {i}') ON CONFLICT DO NOTHING;"
    for i in range(WRITERS)
)


async def oplog_on(url: str, data_dir: Path, total: int) -> tuple[float, float]:
    """B4's concurrent appends and a full verify on ``url``: (appends/s, verify s)."""
    db = await open_db(url, data_dir)
    store = await OpStore.open(db, NodeKey.generate())
    names = [project_of(w) for w in range(OPLOG_WRITERS)]
    await store.append_many([CreateProject(n, f"/srv/{n}", "main", "UTC") for n in names], SETUP)
    try:
        per_writer = workload(total)

        async def writer(changes: list[Any]) -> None:
            for change in changes:
                await store.append(change, ORIGIN)

        start = time.perf_counter()
        await asyncio.gather(*(writer(c) for c in per_writer))
        rate = total / (time.perf_counter() - start)
        start = time.perf_counter()
        report = await verify(db)
        assert report.ok, str(report)
        return rate, time.perf_counter() - start
    finally:
        await db.aclose()


async def run(txns: int, ops: int) -> None:
    global TXNS
    TXNS = txns
    with (
        tempfile.TemporaryDirectory(prefix="musher-bench-pg-") as tmp,
        start_postgres(fsync=True) as server,
    ):
        data_dir = Path(tmp)
        progress(f"pg_driver: psycopg, {txns} group-committed appends, {READS} reads")
        psycopg_figures = await with_psycopg(server.new_database(), data_dir)
        progress(f"pg_driver: asyncpg, {txns} group-committed appends, {READS} reads")
        asyncpg_figures = await with_asyncpg(server.new_database(), data_dir)
        progress(f"pg_driver: OpStore on SQLite, {ops} appends ({OPLOG_WRITERS} writers)")
        sqlite_rate, sqlite_verify = await oplog_on(f"sqlite:///{tmp}/b4.db", data_dir, ops)
        progress(f"pg_driver: OpStore on PostgreSQL, {ops} appends")
        pg_rate, pg_verify = await oplog_on(server.new_database(), data_dir, ops)
    emit(
        NAME,
        {"writers": WRITERS, "txns": txns, "reads": READS, "oplog_ops": ops, **machine()},
        {
            "psycopg": psycopg_figures,
            "asyncpg": asyncpg_figures,
            "appends_psycopg_over_asyncpg": rnd(
                psycopg_figures["appends_per_s"] / asyncpg_figures["appends_per_s"], 2
            ),
            "read_p50_psycopg_over_asyncpg": rnd(
                psycopg_figures["read_p50_us"] / asyncpg_figures["read_p50_us"], 2
            ),
            "oplog_appends_per_s_sqlite": rnd(sqlite_rate, 0),
            "oplog_appends_per_s_postgresql": rnd(pg_rate, 0),
            "oplog_appends_postgresql_over_sqlite": rnd(pg_rate / sqlite_rate, 2),
            "verify_s_sqlite": rnd(sqlite_verify, 2),
            "verify_s_postgresql": rnd(pg_verify, 2),
            "verify_postgresql_over_sqlite": rnd(pg_verify / sqlite_verify, 2),
        },
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--txns", type=int, default=TXNS)
    parser.add_argument("--ops", type=int, default=OPS)
    args = parser.parse_args()
    quiet_logs()
    asyncio.run(run(args.txns, args.ops))


if __name__ == "__main__":
    main()
