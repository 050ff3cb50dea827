"""B4 op log: append signed ops (group commit, ``synchronous=FULL``), replay them, verify.

Workload: ``WRITERS`` (64) writers, each owning one project, append a fixed sequence of
changes: ``item.create`` of its next item, then three ``item.update`` stage changes of it
(coding, qa, merge), over and over, ``N`` ops in all (plus one ``project.create`` each).
The changes are built before the clock starts; what is timed is what a caller of the store
pays: canonical payload, signature, insert, apply to the materialised tables, durable
commit.

* ``concurrent``: the 64 writers call ``OpStore.append`` one op at a time, concurrently, so
  the database's group commit shares transactions and fsyncs among them. Also reported: the
  latency of each ``append`` (p50/p99).
* ``batched``: one caller appends the same changes (writers interleaved, each writer's own
  order kept) with ``OpStore.append_many``, ``BATCH`` (100) changes per call.
* ``replay``: ``pipeline.audit.replay_into`` a fresh scratch ``Database`` (reads every op, rebuilds
  every materialised table in one transaction); the rebuilt tables are then checked equal to
  the live ones (not timed).
* ``verify``: ``pipeline.audit.verify`` (every signature, seq order, full replay and compare).
* baseline: the very rows of the concurrent log (same ``ops`` table shape, signatures as
  stored, nothing signed or applied) inserted with plain ``sqlite3`` ``INSERT`` in one
  transaction, ``synchronous=FULL``.

Each phase is repeated ``--reps`` times on fresh databases; figures are medians over reps
(and each rep's value). ``make bench`` runs ``N = 20,000`` to stay short; ``--ops 100000``
runs the full size of the BENCH table. Asserts nothing. Run alone: ``python -m bench.oplog``.
"""

from __future__ import annotations

import argparse
import asyncio
import sqlite3
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.common import emit, machine, median, percentile, progress, quiet_logs, rnd
from bot.db import Database
from pipeline.audit import replay_into, verify
from pipeline.keys import NodeKey
from pipeline.materialise import create_tables, read_tables
from pipeline.model import Coding, Item, ItemKind, Merge, Qa, SystemOrigin, UserOrigin
from pipeline.ops import Change, CreateItem, CreateProject, UpdateItem
from pipeline.store import OpStore

NAME = "B4_oplog"
OPS = 20_000
FULL_OPS = 100_000
WRITERS = 64
BATCH = 100
REPS = 5
TARGET = ">= 5,000 appends/s; replay < 3 s"
ORIGIN = UserOrigin("web", "alice", "bench")
SETUP = SystemOrigin("bench", "setup")
_ROW_COLUMNS = "project, item, kind, payload, origin, author, seq, ts, sig"


def project_of(writer: int) -> str:
    return f"p{writer:02d}"


def changes_of(writer: int, count: int) -> list[Change]:
    """``count`` changes of one writer: create item k, move it to coding, qa, merge; repeat."""
    project, out = project_of(writer), []
    stages = (Coding(), Qa(), Merge())
    number = 0
    while len(out) < count:
        number += 1
        item = Item(
            number=number, kind=ItemKind.STORY, title=f"Story {number} of {project}",
            body="As a user I want the board to load fast.", origin=ORIGIN,
            created_at=1_700_000_000.0 + number, updated_at=1_700_000_000.0 + number,
        )  # fmt: skip
        out.append(CreateItem(project, item))
        out.extend(UpdateItem(project, number, stage=s) for s in stages)
    return out[:count]


def workload(total: int) -> list[list[Change]]:
    """Each writer's changes; ``total`` in all."""
    return [changes_of(w, total // WRITERS + (w < total % WRITERS)) for w in range(WRITERS)]


def interleaved(per_writer: list[list[Change]]) -> list[Change]:
    """Round robin over the writers, each writer's own order kept."""
    longest = max(len(changes) for changes in per_writer)
    return [c[i] for i in range(longest) for c in per_writer if i < len(c)]


async def open_store(path: Path) -> tuple[Database, OpStore]:
    db = await Database.open(path)
    store = await OpStore.open(db, NodeKey.generate())
    names = [project_of(w) for w in range(WRITERS)]
    await store.append_many([CreateProject(n, f"/srv/{n}", "main", "UTC") for n in names], SETUP)
    return db, store


@dataclass
class Rep:
    concurrent_s: float = 0.0
    batched_s: float = 0.0
    baseline_s: float = 0.0
    replay_s: float = 0.0
    verify_s: float = 0.0
    replay_ops: int = 0
    replay_matches: bool = False
    verify_ok: bool = False
    verify_report: str = ""
    latencies_ms: list[float] = field(default_factory=list)


async def concurrent(store: OpStore, per_writer: list[list[Change]], rep: Rep) -> None:
    async def writer(changes: list[Change]) -> None:
        for change in changes:
            start = time.perf_counter()
            await store.append(change, ORIGIN)
            rep.latencies_ms.append((time.perf_counter() - start) * 1000)

    start = time.perf_counter()
    async with asyncio.TaskGroup() as group:
        for w, changes in enumerate(per_writer):
            group.create_task(writer(changes), name=f"b4-writer-{w}")
    rep.concurrent_s = time.perf_counter() - start


async def batched(store: OpStore, changes: list[Change], rep: Rep) -> None:
    start = time.perf_counter()
    for i in range(0, len(changes), BATCH):
        await store.append_many(changes[i : i + BATCH], ORIGIN)
    rep.batched_s = time.perf_counter() - start


def raw_insert(rows: list[tuple[Any, ...]], path: Path) -> float:
    """The same rows into the same table shape with plain INSERTs, one transaction."""
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        create_tables(conn)
        start = time.perf_counter()
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany(
            f"INSERT INTO ops ({_ROW_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", rows
        )
        conn.execute("COMMIT")
        return time.perf_counter() - start
    finally:
        conn.close()


async def replay_and_verify(db: Database, scratch_path: Path, rep: Rep) -> None:
    scratch = await Database.open(scratch_path)
    try:
        start = time.perf_counter()
        rep.replay_ops = await replay_into(db, scratch)
        rep.replay_s = time.perf_counter() - start
        rep.replay_matches = await db.write(read_tables) == await scratch.write(read_tables)
    finally:
        await scratch.aclose()
    start = time.perf_counter()
    report = await verify(db)
    rep.verify_s = time.perf_counter() - start
    rep.verify_ok, rep.verify_report = report.ok, str(report)


async def one_rep(tmp: Path, total: int, index: int) -> Rep:
    rep = Rep()
    per_writer = workload(total)
    db, store = await open_store(tmp / f"concurrent-{index}.db")
    try:
        progress(f"B4 rep {index + 1}: {total} concurrent appends ({WRITERS} writers)")
        await concurrent(store, per_writer, rep)
        rows = await db.read(f"SELECT {_ROW_COLUMNS} FROM ops ORDER BY rowid")
        rep.baseline_s = raw_insert([tuple(r) for r in rows], tmp / f"raw-{index}.db")
        progress(f"B4 rep {index + 1}: replay and verify {len(rows)} ops")
        await replay_and_verify(db, tmp / f"scratch-{index}.db", rep)
    finally:
        await db.aclose()
    db, store = await open_store(tmp / f"batched-{index}.db")
    try:
        progress(f"B4 rep {index + 1}: {total} appends in batches of {BATCH}")
        await batched(store, interleaved(per_writer), rep)
    finally:
        await db.aclose()
    return rep


def _figures(reps: list[Rep], total: int) -> dict[str, Any]:
    def med(values: list[float]) -> float:
        return median(values)

    concurrent_rate = med([total / r.concurrent_s for r in reps])
    batched_rate = med([total / r.batched_s for r in reps])
    baseline_rate = med([r.replay_ops / r.baseline_s for r in reps])
    return {
        "concurrent_appends_per_s": rnd(concurrent_rate, 0),
        "concurrent_appends_per_s_reps": [rnd(total / r.concurrent_s, 0) for r in reps],
        "append_latency_p50_ms": rnd(med([percentile(r.latencies_ms, 50) for r in reps])),
        "append_latency_p99_ms": rnd(med([percentile(r.latencies_ms, 99) for r in reps])),
        "batched_appends_per_s": rnd(batched_rate, 0),
        "batched_appends_per_s_reps": [rnd(total / r.batched_s, 0) for r in reps],
        "baseline_raw_inserts_per_s": rnd(baseline_rate, 0),
        "ratio_concurrent_to_raw": rnd(concurrent_rate / baseline_rate, 4),
        "ratio_batched_to_raw": rnd(batched_rate / baseline_rate, 4),
        "ratio_batched_to_concurrent": rnd(batched_rate / concurrent_rate, 2),
        "replay_s": rnd(med([r.replay_s for r in reps])),
        "replay_s_reps": [rnd(r.replay_s) for r in reps],
        "replay_ops_per_s": rnd(med([r.replay_ops / r.replay_s for r in reps]), 0),
        "verify_s": rnd(med([r.verify_s for r in reps])),
        "verify_s_reps": [rnd(r.verify_s) for r in reps],
        "ratio_replay_to_raw_insert": rnd(med([r.replay_s / r.baseline_s for r in reps]), 1),
        "ratio_verify_to_raw_insert": rnd(med([r.verify_s / r.baseline_s for r in reps]), 1),
        "replay_reproduces_tables": all(r.replay_matches for r in reps),
        "verify_ok": all(r.verify_ok for r in reps),
        "verify_report": reps[-1].verify_report,
    }


async def run(total: int, reps: int) -> dict[str, Any]:
    quiet_logs()
    started = time.monotonic()
    results = []
    with tempfile.TemporaryDirectory(prefix="musher-b4-") as tmp:
        for index in range(reps):
            results.append(await one_rep(Path(tmp), total, index))
    params = {
        "ops": total,
        "note": None
        if total >= FULL_OPS
        else f"{total} ops to keep `make bench` short; `python -m bench.oplog --ops {FULL_OPS}`"
        " for the full size",
        "log_ops": results[0].replay_ops,
        "setup_ops": WRITERS,
        "writers": WRITERS,
        "batch": BATCH,
        "op_mix": "per writer and project: item.create, then item.update to coding, qa, merge",
        "concurrent": "64 tasks, each awaiting OpStore.append one op at a time (group commit)",
        "batched": f"one caller, OpStore.append_many of {BATCH} changes per transaction",
        "replay": "audit.replay_into a fresh Database file (reads the log, one transaction)",
        "verify": "audit.verify(): signatures, seq order, replay in memory, compare tables",
        "baseline": "the concurrent log's rows, plain sqlite3 executemany INSERT into the same"
        " ops table shape, one transaction, synchronous=FULL",
        "db": "SQLite file in a temp dir, WAL, synchronous=FULL",
        "reps": reps,
        "aggregation": "median over reps (each rep on fresh databases)",
        "target": TARGET,
        "machine": machine(),
        "wall_s": round(time.monotonic() - started, 1),
    }
    return {"bench": NAME, "params": params, "figures": _figures(results, total)}


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.oplog")
    parser.add_argument("--ops", type=int, default=OPS)
    parser.add_argument("--reps", type=int, default=REPS)
    args = parser.parse_args()
    result = asyncio.run(run(args.ops, args.reps))
    emit(result["bench"], result["params"], result["figures"])


if __name__ == "__main__":
    main()
