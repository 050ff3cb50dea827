"""R2: the coalescer under random arrivals, latencies, slow cancels and stops (virtual clock)."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from hypothesis import given, settings
from hypothesis import strategies as st

from bot.clock import VirtualClock
from bot.dispatcher import Dispatcher
from bot.messages import QueuedText

WINDOW = 1.5
MAX_WAIT = 7.5
TTL = 600.0
TICK = 0.25  # exact in binary: no float fuzz in the time checks

Mode = Literal["collect", "interrupt"]


@dataclass
class Run:
    session: str
    ids: tuple[int, ...]
    started: float
    ended: float = -1.0
    cancelled: bool = False


@dataclass
class Outcome:
    runs: list[Run]
    arrivals: dict[int, tuple[str, float]]
    dropped: list[int]
    max_active: dict[str, int]
    sessions_left: int
    callbacks_left: int
    depth_left: int


@st.composite
def schedules(draw: st.DrawFn) -> list[tuple[int, int, int]]:
    """``(tick, session, kind)`` events in time order; kind 0 is a stop, anything else a message."""
    sessions = draw(st.one_of(st.integers(1, 3), st.integers(1, 20)))
    events, tick = [], 0
    count = draw(st.integers(0, 80))
    gap = st.one_of(st.integers(0, 2), st.integers(0, 12))  # bursts and pauses
    for gap_ticks in draw(st.lists(gap, min_size=count, max_size=count)):
        tick += gap_ticks
        events.append((tick, draw(st.integers(0, sessions - 1)), draw(st.integers(0, 9))))
    return events


latency_st = st.lists(st.integers(0, 40), min_size=1, max_size=8)  # ticks
wind_down_st = st.lists(st.integers(0, 8), min_size=1, max_size=4)  # ticks a cancel takes


async def simulate(
    events: list[tuple[int, int, int]],
    latencies: list[int],
    wind_downs: list[int],
    mode: Mode,
    cap: int,
) -> Outcome:
    clock = VirtualClock()
    runs: list[Run] = []
    active: dict[str, int] = defaultdict(int)
    max_active: dict[str, int] = defaultdict(int)
    dropped: list[int] = []

    async def run_turn(session: str, batch: Sequence[QueuedText]) -> None:
        k = len(runs)
        run = Run(session, tuple(i for m in batch for i in m.journal_ids), clock.now())
        runs.append(run)
        active[session] += 1
        max_active[session] = max(max_active[session], active[session])
        try:
            await clock.sleep(latencies[k % len(latencies)] * TICK)
        except asyncio.CancelledError:
            run.cancelled = True
            await clock.sleep(wind_downs[k % len(wind_downs)] * TICK)  # killing the process
            raise
        finally:
            run.ended = clock.now()
            active[session] -= 1

    async def discard(session: str, batch: Sequence[QueuedText]) -> None:
        dropped.extend(i for m in batch for i in m.journal_ids)

    d = Dispatcher(
        run_turn=run_turn,
        discard=discard,
        clock=clock,
        coalesce_window_s=WINDOW,
        max_wait_s=MAX_WAIT,
        busy_mode=mode,
        queue_cap=cap,
        idle_ttl_s=TTL,
    )
    arrivals: dict[int, tuple[str, float]] = {}
    stops: list[asyncio.Task[bool]] = []
    for tick, s, kind in events:
        await clock.advance(tick * TICK - clock.now())
        session = f"web:room{s}"
        if kind == 0:
            stops.append(asyncio.create_task(d.stop(session), name=f"stop:{session}"))
        else:
            jid = len(arrivals) + 1
            arrivals[jid] = (session, clock.now())
            d.submit(session, QueuedText(f"user{kind}", f"m{jid}", jid, clock.now()))
    await clock.run_until_idle()
    await asyncio.gather(*stops)
    await clock.run_until_idle()
    return Outcome(
        runs,
        arrivals,
        dropped,
        dict(max_active),
        d.session_count(),
        clock.pending(),
        d.queue_depth(),
    )


def check(out: Outcome, mode: Mode) -> None:
    assert all(n <= 1 for n in out.max_active.values()), "two turns at once in one session"
    assert out.sessions_left == 0 and out.callbacks_left == 0 and out.depth_left == 0
    assert len(out.dropped) == len(set(out.dropped)), "a message discarded twice"
    dropped = set(out.dropped)

    appearances: dict[int, list[Run]] = defaultdict(list)
    for run in out.runs:
        for jid in run.ids:
            appearances[jid].append(run)
    for jid, (session, _) in out.arrivals.items():
        seen_in = appearances[jid]
        assert all(r.session == session for r in seen_in)
        assert all(r.cancelled for r in seen_in[:-1]), f"m{jid} ran again after an answer"
        if jid in dropped:
            assert all(r.cancelled for r in seen_in), f"m{jid} answered and discarded"
        else:
            assert seen_in and not seen_in[-1].cancelled, f"m{jid} lost"
        if mode == "collect":
            assert len(seen_in) <= 1, f"m{jid} in two batches without an interrupt"

    by_session: dict[str, list[Run]] = defaultdict(list)
    for run in out.runs:
        by_session[run.session].append(run)
    for runs in by_session.values():
        check_session(runs, out.arrivals)


def check_session(runs: list[Run], arrivals: dict[int, tuple[str, float]]) -> None:
    """Order is kept, and no message waits past ``MAX_WAIT`` once its session is free."""
    seen: set[int] = set()
    for k, run in enumerate(runs):
        assert list(run.ids) == sorted(set(run.ids)), "batch out of order"
        new = [i for i in run.ids if i not in seen]
        assert all(i > max(seen, default=0) for i in new), "a later batch overtook an earlier one"
        free_since = max((r.ended for r in runs[:k]), default=float("-inf"))
        assert free_since <= run.started, "turn started before the previous one ended"
        for jid in new:
            waited = run.started - max(arrivals[jid][1], free_since)
            assert waited <= MAX_WAIT, f"m{jid} waited {waited}s"
        seen.update(run.ids)


@settings(max_examples=200, deadline=None)
@given(
    events=schedules(),
    latencies=latency_st,
    wind_downs=wind_down_st,
    mode=st.sampled_from(["collect", "interrupt"]),
    cap=st.sampled_from([3, 5, 50]),
)
def test_coalescer_invariants(
    events: list[tuple[int, int, int]],
    latencies: list[int],
    wind_downs: list[int],
    mode: Mode,
    cap: int,
) -> None:
    out = asyncio.run(simulate(events, latencies, wind_downs, mode, cap))
    check(out, mode)
