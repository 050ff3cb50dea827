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
* baseline: the very rows of the concurrent log (same ``ops`` table shape, signatures as
  stored, nothing signed or applied) inserted with plain ``sqlite3`` ``INSERT`` in one
  transaction, ``synchronous=FULL``.

Replay and verify run on a log of ``--log-ops`` (100,000: the full size of the BENCH table)
ops of the same mix, written once with ``append_many`` in batches of ``LOG_BATCH``:

* ``replay``: ``pipeline.audit.replay_into`` a fresh scratch ``Database`` (reads every op, rebuilds
  every materialised table in one transaction); the rebuilt tables are then checked equal to
  the live ones (not timed).
* ``verify``: ``pipeline.audit.verify`` with the node's key, as ``musher audit verify`` runs
  it (every signature, seq order, full replay and compare)
  while a writer keeps appending one op at a time (a room setting, as a command would):
  reported are the writes acknowledged while verify ran and their latency, next to the same
  writer's latency alone just before (verify must not stall writes).
* baseline: the big log's rows inserted with plain ``INSERT`` as above.

The append phases are repeated ``--reps`` times on fresh databases, replay and verify
``--reps`` times on the one big log; figures are medians over reps (and each rep's value).
Asserts nothing. Run alone: ``python -m bench.oplog``.
"""

from __future__ import annotations

import argparse
import asyncio
import math
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
from pipeline.ops import Change, CreateItem, CreateProject, SetRoom, UpdateItem
from pipeline.store import OpStore

NAME = "B4_oplog"
OPS = 20_000
FULL_OPS = 100_000
LOG_BATCH = 1_000
WRITER_PAUSE_S = 0.005
WRITERS = 64
BATCH = 100
REPS = 5
TARGET = ">= 5,000 appends/s; replay < 3 s and verify < 5 s at 100,000 ops, writes go on"
ORIGIN = UserOrigin("web", "alice", "bench")
SETUP = SystemOrigin("bench", "setup")
_ROW_COLUMNS = "project, item, kind, payload, origin, author, seq, ts, sig"


def project_of(writer: int) -> str:
    return f"p{writer:02d}"


def changes_of(writer: int, count: int) -> list[Change]:
    """``count`` changes of one writer: create item k, move it to coding, qa, merge; repeat."""
    project, out = project_of(writer), list[Change]()
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


async def open_store(path: Path, key: NodeKey | None = None) -> tuple[Database, OpStore]:
    db = await Database.open(path)
    store = await OpStore.open(db, key or NodeKey.generate())
    names = [project_of(w) for w in range(WRITERS)]
    await store.append_many([CreateProject(n, f"/srv/{n}", "main", "UTC") for n in names], SETUP)
    return db, store


@dataclass
class Rep:
    concurrent_s: float = 0.0
    batched_s: float = 0.0
    baseline_s: float = 0.0
    log_ops: int = 0
    latencies_ms: list[float] = field(default_factory=list)


@dataclass
class Check:
    """One replay and one verify of the big log."""

    replay_s: float = 0.0
    verify_s: float = 0.0
    replay_matches: bool = False
    verify_ok: bool = False
    verify_report: str = ""
    writes_alone_ms: list[float] = field(default_factory=list)
    writes_during_verify_ms: list[float] = field(default_factory=list)


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


async def _writer(store: OpStore, stop: asyncio.Event, latencies: list[float]) -> None:
    """Append one room-setting op at a time until ``stop``, pausing ``WRITER_PAUSE_S``."""
    ambient = False
    while not stop.is_set():
        ambient = not ambient
        start = time.perf_counter()
        await store.append(SetRoom("bench:writer", ambient=ambient), ORIGIN)
        latencies.append((time.perf_counter() - start) * 1000)
        await asyncio.sleep(WRITER_PAUSE_S)


async def replay_and_verify(
    db: Database, store: OpStore, key: NodeKey, scratch_path: Path
) -> Check:
    check = Check()
    scratch = await Database.open(scratch_path)
    try:
        start = time.perf_counter()
        await replay_into(db, scratch)
        check.replay_s = time.perf_counter() - start
        check.replay_matches = await db.write(read_tables) == await scratch.write(read_tables)
    finally:
        await scratch.aclose()
    stop = asyncio.Event()
    alone = asyncio.create_task(_writer(store, stop, check.writes_alone_ms))
    await asyncio.sleep(1.0)
    stop.set()
    await alone
    stop = asyncio.Event()
    during = asyncio.create_task(_writer(store, stop, check.writes_during_verify_ms))
    try:
        start = time.perf_counter()
        report = await verify(db, key=key)
        check.verify_s = time.perf_counter() - start
    finally:
        stop.set()
        await during
    check.verify_ok, check.verify_report = report.ok, str(report)
    return check


async def one_rep(tmp: Path, total: int, index: int) -> Rep:
    rep = Rep()
    per_writer = workload(total)
    db, store = await open_store(tmp / f"concurrent-{index}.db")
    try:
        progress(f"B4 rep {index + 1}: {total} concurrent appends ({WRITERS} writers)")
        await concurrent(store, per_writer, rep)
        rows = await db.read(f"SELECT {_ROW_COLUMNS} FROM ops ORDER BY rowid")
        rep.baseline_s = raw_insert([tuple(r) for r in rows], tmp / f"raw-{index}.db")
        rep.log_ops = len(rows)
    finally:
        await db.aclose()
    db, store = await open_store(tmp / f"batched-{index}.db")
    try:
        progress(f"B4 rep {index + 1}: {total} appends in batches of {BATCH}")
        await batched(store, interleaved(per_writer), rep)
    finally:
        await db.aclose()
    return rep


async def big_log(tmp: Path, total: int, reps: int) -> tuple[list[Check], int, float]:
    """Replay and verify a log of ``total`` ops ``reps`` times; also its raw-insert time."""
    key = NodeKey.generate()
    db, store = await open_store(tmp / "big.db", key)
    try:
        progress(f"B4: writing a log of {total} ops for replay and verify")
        changes = interleaved(workload(total))
        for i in range(0, len(changes), LOG_BATCH):
            await store.append_many(changes[i : i + LOG_BATCH], ORIGIN)
        rows = await db.read(f"SELECT {_ROW_COLUMNS} FROM ops ORDER BY rowid")
        baseline_s = raw_insert([tuple(r) for r in rows], tmp / "big-raw.db")
        checks = []
        for index in range(reps):
            progress(f"B4 rep {index + 1}: replay and verify {len(rows)} ops")
            checks.append(await replay_and_verify(db, store, key, tmp / f"scratch-{index}.db"))
        return checks, len(rows), baseline_s
    finally:
        await db.aclose()


def _figures(reps: list[Rep], total: int) -> dict[str, Any]:
    concurrent_rate = median([total / r.concurrent_s for r in reps])
    batched_rate = median([total / r.batched_s for r in reps])
    baseline_rate = median([r.log_ops / r.baseline_s for r in reps])
    return {
        "concurrent_appends_per_s": rnd(concurrent_rate, 0),
        "concurrent_appends_per_s_reps": [rnd(total / r.concurrent_s, 0) for r in reps],
        "append_latency_p50_ms": rnd(median([percentile(r.latencies_ms, 50) for r in reps])),
        "append_latency_p99_ms": rnd(median([percentile(r.latencies_ms, 99) for r in reps])),
        "batched_appends_per_s": rnd(batched_rate, 0),
        "batched_appends_per_s_reps": [rnd(total / r.batched_s, 0) for r in reps],
        "baseline_raw_inserts_per_s": rnd(baseline_rate, 0),
        "ratio_concurrent_to_raw": rnd(concurrent_rate / baseline_rate, 4),
        "ratio_batched_to_raw": rnd(batched_rate / baseline_rate, 4),
        "ratio_batched_to_concurrent": rnd(batched_rate / concurrent_rate, 2),
    }


def _log_figures(checks: list[Check], log_ops: int, baseline_s: float) -> dict[str, Any]:
    alone = [ms for c in checks for ms in c.writes_alone_ms]
    during = [ms for c in checks for ms in c.writes_during_verify_ms]
    return {
        "log_ops": log_ops,
        "replay_s": rnd(median([c.replay_s for c in checks])),
        "replay_s_reps": [rnd(c.replay_s) for c in checks],
        "replay_ops_per_s": rnd(median([log_ops / c.replay_s for c in checks]), 0),
        "verify_s": rnd(median([c.verify_s for c in checks])),
        "verify_s_reps": [rnd(c.verify_s) for c in checks],
        "log_baseline_raw_insert_s": rnd(baseline_s),
        "ratio_replay_to_raw_insert": rnd(median([c.replay_s for c in checks]) / baseline_s, 1),
        "ratio_verify_to_raw_insert": rnd(median([c.verify_s for c in checks]) / baseline_s, 1),
        "writes_acked_during_verify_per_rep": [len(c.writes_during_verify_ms) for c in checks],
        "write_latency_alone_p50_ms": rnd(percentile(alone, 50)),
        "write_latency_alone_max_ms": rnd(max(alone, default=math.nan)),
        "write_latency_during_verify_p50_ms": rnd(percentile(during, 50)),
        "write_latency_during_verify_p99_ms": rnd(percentile(during, 99)),
        "write_latency_during_verify_max_ms": rnd(max(during, default=math.nan)),
        "replay_reproduces_tables": all(c.replay_matches for c in checks),
        "verify_ok": all(c.verify_ok for c in checks),
        "verify_report": checks[-1].verify_report,
    }


async def run(total: int, reps: int, log_ops: int) -> dict[str, Any]:
    quiet_logs()
    started = time.monotonic()
    results = []
    with tempfile.TemporaryDirectory(prefix="musher-b4-") as tmp:
        for index in range(reps):
            results.append(await one_rep(Path(tmp), total, index))
        checks, big_ops, big_baseline_s = await big_log(Path(tmp), log_ops, reps)
    params = {
        "ops": total,
        "log_ops": big_ops,
        "setup_ops": WRITERS,
        "writers": WRITERS,
        "batch": BATCH,
        "op_mix": "per writer and project: item.create, then item.update to coding, qa, merge",
        "concurrent": "64 tasks, each awaiting OpStore.append one op at a time (group commit)",
        "batched": f"one caller, OpStore.append_many of {BATCH} changes per transaction",
        "replay": f"audit.replay_into a fresh Database file, log of {big_ops} ops (one"
        " transaction)",
        "verify": "audit.verify() with the node's key, as `musher audit verify` runs it:"
        " snapshot read, signatures, seq order, replay in memory,"
        f" compare tables; meanwhile one writer appends a room.set op every {WRITER_PAUSE_S} s",
        "baseline": "the log's rows, plain sqlite3 executemany INSERT into the same ops table"
        " shape, one transaction, synchronous=FULL",
        "db": "SQLite file in a temp dir, WAL, synchronous=FULL",
        "reps": reps,
        "aggregation": "median over reps (append phases on fresh databases each rep)",
        "target": TARGET,
        "machine": machine(),
        "wall_s": round(time.monotonic() - started, 1),
    }
    figures = _figures(results, total) | _log_figures(checks, big_ops, big_baseline_s)
    return {"bench": NAME, "params": params, "figures": figures}


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.oplog")
    parser.add_argument("--ops", type=int, default=OPS)
    parser.add_argument("--log-ops", type=int, default=FULL_OPS, help="replay/verify log size")
    parser.add_argument("--reps", type=int, default=REPS)
    args = parser.parse_args()
    result = asyncio.run(run(args.ops, args.reps, args.log_ops))
    emit(result["bench"], result["params"], result["figures"])


if __name__ == "__main__":
    main()
