"""B3 commands: ``status`` and ``move N <stage>`` on a project of 10,000 items.

Setup: one project whose 10,000 items are written straight into the op log with
``append_many`` (signed ``item.create`` ops in batches of 500) in a fixed, seeded mix of
stages (many archived and done, a live middle, a few of every badge) with some dependencies.
The stack is the daemon's: SQLite file (WAL, ``synchronous=FULL``, group commit), op store,
engine and command registry from ``build_core``.

Measured, each call timed alone, the kinds interleaved so the machine's noise hits them
alike:

* ``move``: ``move N coding`` / ``move N backlog`` alternating over a pool of Backlog items,
  so every call succeeds, as a room sends it (``Registry.match`` + ``Registry.run``):
  argument parsing, room project, lookup, transition, signed op and its durable commit.
* ``status``: the chat command the same way: one statement reads each column's count and
  its first 15 items (by the ``items_by_column`` index on the derived ``items.col``) plus
  the columns of those items' dependencies; only the listed items are decoded; board
  rendered.
* baselines: the items table alone, raw (``SELECT * FROM items WHERE project = ?`` through
  ``Database.read``) and decoded (``OpStore.items``: what ``status`` read before it learned
  to cut the board, and what the board API and ``all_status`` still read); one durable
  single-row commit through ``Database.write`` (the floor under any move); ``render_board``
  alone on items already in memory (cut in Python, then rendered).

The full-table baselines cost tens of times a move, so by default status runs 40 times per
rep (200 over the 5 reps) among the 200 moves of each rep, and the baselines at every other
status call, keeping ``make bench`` short; ``--status-calls 200`` runs status 200 times per
rep.
Figures: p50/p99 per kind per rep, the median over reps, ratios of those medians, and pooled
percentiles. Asserts nothing.
Run alone: ``python -m bench.commands`` (``--items``, ``--calls``, ``--status-calls``,
``--reps``).
"""

from __future__ import annotations

import argparse
import asyncio
import random
import tempfile
import time
from collections.abc import Awaitable, Callable
from functools import partial
from pathlib import Path
from typing import Any

from bench.common import (
    Stack,
    bench_settings,
    emit,
    machine,
    median,
    percentile,
    progress,
    quiet_logs,
    rnd,
)
from bot.commands.board import render_board
from bot.commands.registry import CommandContext
from bot.messages import Session
from pipeline.model import (
    Abandoned,
    Archived,
    Backlog,
    Blocked,
    Coding,
    Done,
    Frozen,
    Item,
    ItemKind,
    Merge,
    MergeFailure,
    Qa,
    Rejected,
    ReviewHold,
    Stage,
    Superseded,
    SystemOrigin,
    UserOrigin,
)
from pipeline.ops import CreateItem
from pipeline.storage import Conn

NAME = "B3_commands"
PROJECT = "bench"
SESSION = "web:bench"
ITEMS = 10_000
CALLS = 200
STATUS_CALLS = 40
REPS = 5
BATCH = 500
MOVE_POOL = 32
SEED = 3
TARGET = "status p50 < 20 ms; move p50 < 5 ms incl. commit"
SETUP_ORIGIN = SystemOrigin("bench", "setup")
ALICE = UserOrigin("web", "alice", "bench")

MIX: tuple[tuple[Stage, int], ...] = (
    (Archived(), 30),
    (Done(merge_commit="3f9c2a1b7d4e"), 6),
    (Done(), 4),
    (Backlog(), 20),
    (Coding(), 8),
    (Qa(), 6),
    (Merge(), 3),
    (Blocked("waiting for API keys from the vendor"), 4),
    (ReviewHold("needs a design review"), 3),
    (MergeFailure("conflict", "src/app.py changed on main"), 2),
    (Frozen(resume_to=Coding()), 2),
    (Frozen(resume_to=Backlog()), 1),
    (Abandoned("no longer needed"), 5),
    (Superseded(by=1), 3),
    (Rejected("out of scope"), 3),
)
"""Stages and their weights (percent) in the generated project."""


TITLES = (
    "Login page remembers the last user",
    "Crash on save when the disk is full",
    "Try OAuth device flow",
    "Split the settings module",
    "Export the board as CSV",
    "Rate-limit notifications per room",
)


def generate(count: int, now: float) -> list[Item]:
    """``count`` items numbered 1..count in the :data:`MIX`, a fifth with dependencies."""
    rng = random.Random(SEED)
    stages = [stage for stage, _ in MIX]
    weights = [weight for _, weight in MIX]
    kinds = list(ItemKind)
    out = []
    for n in range(1, count + 1):
        stage = rng.choices(stages, weights)[0]
        if isinstance(stage, Superseded | Frozen) and n == 1:
            stage = Backlog()
        deps: tuple[int, ...] = ()
        if n > 3 and rng.random() < 0.2:
            deps = tuple(sorted(rng.sample(range(max(1, n - 200), n), rng.randint(1, 2))))
        created = now - rng.uniform(60, 90 * 86_400)
        out.append(
            Item(
                number=n, kind=rng.choice(kinds), title=f"Item {n}: {rng.choice(TITLES)}",
                stage=stage, depends_on=deps, origin=ALICE, created_at=created,
                updated_at=created,
            )
        )  # fmt: skip
    return out


async def populate(stack: Stack, count: int) -> list[int]:
    """Write the project and its items; return the Backlog numbers for the move pool."""
    engine = stack.core.engine
    await engine.ensure_project(PROJECT, "/srv/bench", origin=SETUP_ORIGIN)
    engine.default_project = PROJECT
    items = generate(count, engine.now())
    for start in range(0, len(items), BATCH):
        batch = [CreateItem(PROJECT, item) for item in items[start : start + BATCH]]
        await stack.core.engine.store.append_many(batch, SETUP_ORIGIN)
    return [item.number for item in items if isinstance(item.stage, Backlog)][:MOVE_POOL]


class Timer:
    """Collects the milliseconds each awaited call takes."""

    def __init__(self) -> None:
        self.ms: dict[str, list[float]] = {}

    async def time(self, kind: str, call: Callable[[], Awaitable[Any]]) -> Any:
        start = time.perf_counter()
        result = await call()
        self.ms.setdefault(kind, []).append((time.perf_counter() - start) * 1000)
        return result


async def one_rep(
    stack: Stack, pool: list[int], calls: int, status_calls: int
) -> tuple[dict[str, list[float]], int]:
    """``calls`` moves and commits, and ``status_calls`` of the status kinds spread evenly
    among them (every kind interleaved call by call); returns the timings and failed moves."""
    core = stack.core
    registry, store, engine, db = core.registry, core.engine.store, core.engine, stack.db
    ctx = CommandContext(Session.of(SESSION), "alice", True)
    timer = Timer()
    failed = 0
    in_coding: set[int] = set()
    items = await store.items(PROJECT)
    query = "SELECT * FROM items WHERE project = ?"

    async def command(text: str) -> str:
        invocation = registry.match(text)
        assert invocation is not None
        return (await registry.run(invocation, ctx)).text

    def touch(conn: Conn) -> None:
        conn.execute("UPDATE bench_scratch SET v = v + 1 WHERE k = 1")

    status_at = {i * calls // status_calls for i in range(status_calls)} if status_calls else set()
    for i in range(calls):
        number = pool[i % len(pool)]
        target = "backlog" if number in in_coding else "coding"
        reply = await timer.time("move", partial(command, f"move {number} {target}"))
        if "→" in reply:
            in_coding.symmetric_difference_update({number})
        else:
            failed += 1
            progress(f"B3 move refused: {reply}")
        await timer.time("commit", lambda: db.write(touch))
        if i not in status_at:
            continue
        await timer.time("status", lambda: command("status"))
        if len(timer.ms["status"]) % 2 == 0:
            continue  # the baselines at every other status call: they tell the same story
        await timer.time("rows", lambda: db.read(query, (PROJECT,)))
        await timer.time("items", lambda: store.items(PROJECT))
        start = time.perf_counter()
        render_board(PROJECT, items, engine.now())
        timer.ms.setdefault("render", []).append((time.perf_counter() - start) * 1000)
    for number in sorted(in_coding):  # leave the pool in Backlog for the next rep
        await command(f"move {number} backlog")
    return timer.ms, failed


async def _status_text(stack: Stack) -> str:
    invocation = stack.core.registry.match("status")
    assert invocation is not None
    ctx = CommandContext(Session.of(SESSION), "alice", True)
    return (await stack.core.registry.run(invocation, ctx)).text


KINDS = ("status", "move", "rows", "items", "commit", "render")


def _summary(reps: list[dict[str, list[float]]]) -> dict[str, Any]:
    def stat(kind: str, q: float) -> float:
        return median(percentile(rep[kind], q) for rep in reps)

    out: dict[str, Any] = {}
    for kind in KINDS:
        pooled = [ms for rep in reps for ms in rep[kind]]
        out[kind] = {
            "p50_ms": rnd(stat(kind, 50)),
            "p99_ms": rnd(stat(kind, 99)),
            "pooled_p50_ms": rnd(percentile(pooled, 50)),
            "pooled_p99_ms": rnd(percentile(pooled, 99)),
            "calls": len(pooled),
            "p50_ms_reps": [rnd(percentile(rep[kind], 50)) for rep in reps],
        }
    out["ratio_status_to_rows_p50"] = rnd(stat("status", 50) / stat("rows", 50), 2)
    out["ratio_status_to_items_p50"] = rnd(stat("status", 50) / stat("items", 50), 2)
    out["ratio_items_to_rows_p50"] = rnd(stat("items", 50) / stat("rows", 50), 2)
    out["ratio_move_to_commit_p50"] = rnd(stat("move", 50) / stat("commit", 50), 2)
    return out


async def run(count: int, calls: int, status_calls: int, reps: int) -> dict[str, Any]:
    quiet_logs()
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="musher-b3-") as tmp:
        stack = await Stack.open(Path(tmp), bench_settings(window_ms=0))
        try:
            progress(f"B3 writing {count} items")
            setup_start = time.monotonic()
            pool = await populate(stack, count)
            setup_s = time.monotonic() - setup_start

            def scratch(conn: Conn) -> None:
                conn.execute("CREATE TABLE IF NOT EXISTS bench_scratch (k PRIMARY KEY, v)")
                conn.execute("INSERT OR IGNORE INTO bench_scratch VALUES (1, 0)")

            await stack.db.write(scratch)
            items = await stack.core.engine.store.items(PROJECT)
            shown = sum(1 for item in items if not isinstance(item.stage, Archived))
            await one_rep(stack, pool, 20, 3)  # warm-up: caches, imports, pydantic
            status_chars = len(await _status_text(stack))
            results, failed = [], 0
            for rep in range(reps):
                progress(f"B3 rep {rep + 1}/{reps}: {calls} moves, {status_calls} status")
                timings, refused = await one_rep(stack, pool, calls, status_calls)
                results.append(timings)
                failed += refused
        finally:
            await stack.aclose()
    params = {
        "items": count,
        "items_shown_by_status": shown,
        "stage_mix_percent": [[repr(stage), weight] for stage, weight in MIX],
        "items_with_dependencies": sum(1 for item in items if item.depends_on),
        "setup": f"append_many of item.create ops, {BATCH} per transaction",
        "setup_s": round(setup_s, 2),
        "status_reply_chars": status_chars,
        "move_and_commit_calls_per_rep": calls,
        "status_calls_per_rep": status_calls,
        "rows_items_render_calls_per_rep": (status_calls + 1) // 2,
        "note": None
        if status_calls >= CALLS
        else f"status runs {status_calls} times per rep ({status_calls * reps} in all), its"
        " baselines half as often, to keep `make bench` short; `--status-calls"
        f" {CALLS}` for {CALLS} per rep",
        "reps": reps,
        "move_pool": len(pool),
        "status": "Registry.match + Registry.run of 'status' (parse, room project, "
        "per-column counts + first 15 items + their dependencies' columns in one indexed "
        "read, listed items decoded, board rendered)",
        "move": "Registry.match + Registry.run of 'move N coding|backlog' alternating "
        "(lookup, transition, signed op, durable commit)",
        "baselines": {
            "rows": "Database.read('SELECT * FROM items WHERE project = ?')",
            "items": "OpStore.items(project): rows decoded into Items",
            "commit": "Database.write of a one-row UPDATE (durable, synchronous=FULL)",
            "render": "render_board on items already in memory (cut in Python + rendered)",
        },
        "interleaving": "move, commit; status spread evenly among them; rows, items, render"
        " after every other status",
        "aggregation": "p50/p99 per rep, median over reps (ratios of those); pooled over reps",
        "db": "SQLite file in a temp dir, WAL, synchronous=FULL, group commit",
        "target": TARGET,
        "machine": machine(),
        "wall_s": round(time.monotonic() - started, 1),
    }
    figures = {**_summary(results), "moves_refused": failed}
    return {"bench": NAME, "params": params, "figures": figures}


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.commands")
    parser.add_argument("--items", type=int, default=ITEMS)
    parser.add_argument("--calls", type=int, default=CALLS, help="moves per rep")
    parser.add_argument("--status-calls", type=int, default=STATUS_CALLS, help="per rep")
    parser.add_argument("--reps", type=int, default=REPS)
    args = parser.parse_args()
    result = asyncio.run(run(args.items, args.calls, args.status_calls, args.reps))
    emit(result["bench"], result["params"], result["figures"])


if __name__ == "__main__":
    main()
