"""Shared helpers for the benchmarks: JSON output, statistics, settings, an instant provider.

Every benchmark prints exactly one JSON object per line on stdout (``emit``); progress and
diagnostics go to stderr. Nothing here asserts a timing.
"""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import math
import os
import platform
import statistics
import sys
import time
from collections.abc import AsyncGenerator, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bot.daemon import Core, build_core
from bot.db import Database
from bot.ingress import Ingress
from bot.journal import BotLine, LogEntry
from bot.llm.base import Done, TurnEvent, TurnRequest
from bot.messages import QueuedText
from bot.schema import DAEMON_SCHEMA
from config import Settings, load_settings
from pipeline.keys import load_or_create
from pipeline.storage import Job
from pipeline.store import OpStore

PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")
FREE_TEXT = "please have a look at this, message {n}"
"""Free text that no command matches (its first word is not a command)."""


def emit(bench: str, params: dict[str, Any], figures: dict[str, Any]) -> None:
    """Print one benchmark result as one JSON line on stdout."""
    line = json.dumps({"bench": bench, "params": params, "figures": figures}, sort_keys=False)
    print(line, flush=True)


def progress(message: str) -> None:
    """A progress line on stderr (stdout carries only the JSON results)."""
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def quiet_logs() -> None:
    """Keep the daemon's own warnings (e.g. "no transport") from flooding stderr."""
    logging.basicConfig(level=logging.ERROR)
    logging.getLogger("musher").setLevel(logging.ERROR)


def machine() -> dict[str, Any]:
    """What ran the benchmark, for the params block."""
    return {
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "platform": platform.platform(terse=True),
    }


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0-100) with linear interpolation; NaN when empty."""
    if not values:
        return math.nan
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0]
    pos = (len(ordered) - 1) * q / 100.0
    low = math.floor(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time process ``pid`` has used so far, all its threads (Linux
    ``/proc``; None where that cannot be read)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()  # after the command name, which may hold spaces
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def median(values: Iterable[float]) -> float:
    data = [v for v in values if not math.isnan(v)]
    return statistics.median(data) if data else math.nan


def rnd(value: float, digits: int = 3) -> float | None:
    """Round for JSON; NaN/inf become null so the output stays valid JSON."""
    if math.isnan(value) or math.isinf(value):
        return None
    return round(value, digits)


def rss_bytes() -> int:
    """Resident set size of this process, from ``/proc/self/statm``."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * PAGE_SIZE


def bench_settings(
    window_ms: int,
    max_wait_ms: int = 7500,
    idle_ttl_s: float = 600.0,
    busy_mode: str = "collect",
) -> Settings:
    """Default settings (no file, no environment) with the dispatcher knobs a bench needs."""
    settings = load_settings(None, {})
    settings.dispatcher = settings.dispatcher.model_copy(
        update={
            "coalesce_window_ms": window_ms,
            "max_wait_ms": max(max_wait_ms, window_ms),
            "idle_session_ttl_s": idle_ttl_s,
            "busy_mode": busy_mode,
        }
    )
    return settings


@dataclass(slots=True)
class Started:
    """One provider call: when ``run`` began (loop clock) and the batch it was given.

    The benches put the loop time of each message's arrival in its ``ts``.
    """

    at: float
    session: str
    batch: tuple[QueuedText, ...]


@dataclass
class InstantProvider:
    """Records ``loop.time()`` when a turn's ``run`` starts and answers at once (no text).

    ``record=False`` keeps only counts (the memory benchmark must not hold every batch).
    """

    name: str = "bench-instant"
    record: bool = True
    starts: list[Started] = field(default_factory=list)
    turns_started: int = 0
    messages_seen: int = 0

    async def run(
        self, request: TurnRequest, cancel: asyncio.Event
    ) -> AsyncGenerator[TurnEvent, None]:
        now = asyncio.get_running_loop().time()
        if self.record:
            self.starts.append(Started(now, request.session, request.batch))
        self.turns_started += 1
        self.messages_seen += sum(len(m.journal_ids) for m in request.batch)
        yield Done()

    async def reset(self, session: str) -> None:
        return None

    async def aclose(self) -> None:
        return None


class Stack:
    """A real journal (SQLite file, WAL, ``synchronous=FULL``) + the daemon's core + ingress.

    Counts finished turns (``finish_turn`` committed) so a bench can wait for the work it
    started to be fully done, without polling.
    """

    def __init__(self, db: Database, core: Core, provider: InstantProvider) -> None:
        self.db = db
        self.core = core
        self.provider = provider
        self.ingress: Ingress = core.ingress({})
        self.turns_finished = 0
        self._waiters: list[tuple[int, asyncio.Future[None]]] = []
        journal = core.journal
        original, saying = journal.finish_turn, journal.finish_turn_saying

        async def finish_turn(
            turn_id: int, ids: Iterable[int], outcome: str, also: Job[None] | None = None
        ) -> None:
            await original(turn_id, ids, outcome, also)
            self._finished()

        async def finish_turn_saying(
            turn_id: int, ids: Iterable[int], outcome: str, also: Job[None] | None, line: BotLine
        ) -> LogEntry:
            entry = await saying(turn_id, ids, outcome, also, line)
            self._finished()
            return entry

        journal.finish_turn = finish_turn  # type: ignore[method-assign]
        journal.finish_turn_saying = finish_turn_saying  # type: ignore[method-assign]

    def _finished(self) -> None:
        self.turns_finished += 1
        self._wake()

    @classmethod
    async def open(cls, directory: Path, settings: Settings, record: bool = True) -> Stack:
        """Open the database and the op store as ``Daemon.run`` does, then the core."""
        db = await Database.open(directory / "musher.db", DAEMON_SCHEMA)
        provider = InstantProvider(record=record)
        try:
            store = await OpStore.open(db, load_or_create(directory))
            core = build_core(settings, db, store, provider=provider)
        except BaseException:
            await db.aclose()  # its worker threads would otherwise keep the process alive
            raise
        used: object = core.provider
        if used is not provider:
            await db.aclose()
            raise RuntimeError("build_core did not use the benchmark's provider")
        gc.collect()
        gc.freeze()  # as Daemon.run does once started
        return cls(db, core, provider)

    def _wake(self) -> None:
        keep = []
        for target, future in self._waiters:
            if self.turns_finished >= target and not future.done():
                future.set_result(None)
            elif not future.done():
                keep.append((target, future))
        self._waiters = keep

    async def wait_turns(self, target: int, limit_s: float) -> bool:
        """Wait until ``target`` turns have finished in total; False on timeout."""
        if self.turns_finished >= target:
            return True
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append((target, future))
        try:
            await asyncio.wait_for(future, limit_s)
        except TimeoutError:
            return False
        return True

    async def wait_messages(self, target: int, limit_s: float) -> bool:
        """Wait until the provider has seen ``target`` messages (polled every 10 ms)."""
        deadline = time.monotonic() + limit_s
        while self.provider.messages_seen < target:
            if time.monotonic() > deadline:
                return False
            await asyncio.sleep(0.01)
        return True

    async def aclose(self) -> None:
        await self.core.lanes.aclose(1.0)
        await self.core.dispatcher.aclose()
        await self.db.aclose()
        gc.unfreeze()  # the next stack's garbage must be collectable
