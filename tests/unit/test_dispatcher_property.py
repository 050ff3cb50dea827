"""R2: the coalescer under random arrivals, typing, latencies, slow cancels, stops and steering
(virtual clock)."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from hypothesis import example, given, settings
from hypothesis import strategies as st

from bot.clock import VirtualClock
from bot.dispatcher import Dispatcher
from bot.messages import QueuedText
from bot.steer import Inboxes

WINDOW = 1.5
QUIET = 0.5
MAX_WAIT = 7.5
TTL = 600.0
TICK = 0.25  # exact in binary: no float fuzz in the time checks
TYPING = 10  # kinds 10..12: user1..3 typing (for a drawn time; 0 = stopped)

Mode = Literal["collect", "interrupt", "steer"]


@dataclass
class Signal:
    seq: int
    session: str
    sender: str
    at: float
    until: float  # 0: stopped typing


@dataclass
class Run:
    session: str
    ids: list[int]
    started: float
    seen: int = 0  # how many schedule events had been fed when it started
    closed: int = 0  # how many of ``ids`` were its batch (the rest it took while running)
    ended: float = -1.0
    cancelled: bool = False


@dataclass
class Outcome:
    runs: list[Run]
    arrivals: dict[int, tuple[str, float]]
    senders: dict[int, tuple[str, int]]  # journal id -> (sender, event seq)
    signals: list[Signal]
    dropped: list[int]
    max_active: dict[str, int]
    sessions_left: int
    callbacks_left: int
    depth_left: int


@st.composite
def schedules(draw: st.DrawFn) -> list[tuple[int, int, int]]:
    """``(tick, session, kind)`` events in time order; kind 0 is a stop, 1-9 a message,
    ``TYPING``+ a typing signal (only in some schedules: others have no typing at all)."""
    sessions = draw(st.one_of(st.integers(1, 3), st.integers(1, 20)))
    top = draw(st.sampled_from([9, TYPING + 2]))
    events, tick = [], 0
    count = draw(st.integers(0, 80))
    gap = st.one_of(st.integers(0, 2), st.integers(0, 12))  # bursts and pauses
    for gap_ticks in draw(st.lists(gap, min_size=count, max_size=count)):
        tick += gap_ticks
        events.append((tick, draw(st.integers(0, sessions - 1)), draw(st.integers(0, top))))
    return events


latency_st = st.lists(st.integers(0, 40), min_size=1, max_size=8)  # ticks
wind_down_st = st.lists(st.integers(0, 8), min_size=1, max_size=4)  # ticks a cancel takes
typing_st = st.lists(st.integers(0, 40), min_size=1, max_size=6)  # ticks a typing signal lasts


async def simulate(
    events: list[tuple[int, int, int]],
    latencies: list[int],
    wind_downs: list[int],
    mode: Mode,
    cap: int,
    typing_lens: Sequence[int] = (0,),
) -> Outcome:
    clock = VirtualClock()
    inboxes = Inboxes()
    runs: list[Run] = []
    active: dict[str, int] = defaultdict(int)
    max_active: dict[str, int] = defaultdict(int)
    dropped: list[int] = []

    async def run_turn(session: str, batch: Sequence[QueuedText]) -> None:
        k = len(runs)
        ids = [i for m in batch for i in m.journal_ids]
        run = Run(session, ids, clock.now(), fed, len(ids))
        runs.append(run)
        active[session] += 1
        max_active[session] = max(max_active[session], active[session])
        latency = latencies[k % len(latencies)] * TICK
        try:
            inbox = inboxes.get(session)
            if inbox is not None:  # a tool boundary halfway: the turn takes what waits
                await clock.sleep(latency / 2)
                run.ids.extend(i for m in inbox.take() for i in m.journal_ids)
                latency /= 2
            await clock.sleep(latency)
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
        quiet_s=QUIET,
        inboxes=inboxes,
    )
    arrivals: dict[int, tuple[str, float]] = {}
    senders: dict[int, tuple[str, int]] = {}
    signals: list[Signal] = []
    stops: list[asyncio.Task[bool]] = []
    fed = 0
    for seq, (tick, s, kind) in enumerate(events):
        await clock.advance(tick * TICK - clock.now())
        session = f"web:room{s}"
        if kind == 0:
            stops.append(asyncio.create_task(d.stop(session), name=f"stop:{session}"))
        elif kind >= TYPING:
            sender, ticks = f"user{kind - TYPING + 1}", typing_lens[seq % len(typing_lens)]
            until = clock.now() + ticks * TICK if ticks else 0.0
            signals.append(Signal(seq, session, sender, clock.now(), until))
            d.typing(session, sender, ticks * TICK)
        else:
            jid = len(arrivals) + 1
            arrivals[jid] = (session, clock.now())
            senders[jid] = (f"user{kind}", seq)
            d.submit(session, QueuedText(f"user{kind}", f"m{jid}", jid, clock.now()))
        fed = seq + 1
    await clock.run_until_idle()
    await asyncio.gather(*stops)
    await clock.run_until_idle()
    assert len(inboxes) == 0, "an inbox outlived its turn"
    return Outcome(
        runs,
        arrivals,
        senders,
        signals,
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
        if mode != "interrupt":
            assert len(seen_in) <= 1, f"m{jid} in two batches without an interrupt"

    by_session: dict[str, list[Run]] = defaultdict(list)
    for run in out.runs:
        by_session[run.session].append(run)
    for runs in by_session.values():
        check_session(runs, out.arrivals)
        if mode != "interrupt":
            check_closing(runs, out)


def check_closing(runs: list[Run], out: Outcome) -> None:
    """A batch that waited for its window closed exactly when D1 says: ``WINDOW`` after its
    last message, or where typing is reported ``QUIET`` after it and not while a sender of
    it is still typing (or ``QUIET`` after their typing ended); never later than
    ``MAX_WAIT`` after its first message."""
    for k, run in enumerate(runs):
        free_since = max((r.ended for r in runs[:k]), default=float("-inf"))
        if run.started <= free_since:
            continue  # a follow-up: it starts when the previous turn ends, no window
        batch = run.ids[: run.closed]
        first, last = out.arrivals[batch[0]][1], out.arrivals[batch[-1]][1]
        cap = first + MAX_WAIT
        became_aware = aware(run.session, run.seen, out)
        if became_aware is None:
            assert run.started == min(last + WINDOW, cap), f"plain window of {run.ids}"
            continue
        # a signal that moves the deadline into the past closes the batch at once
        until, moved = 0.0, max(became_aware, last)
        for sender in {out.senders[i][0] for i in batch}:
            said = max(out.senders[i][1] for i in batch if out.senders[i][0] == sender)
            heard = [
                g
                for g in out.signals
                if g.session == run.session and g.sender == sender
                and said < g.seq < run.seen
            ]  # fmt: skip
            if heard:
                until = max(until, heard[-1].until or heard[-1].at)
        expected = max(min(max(last, until) + QUIET, cap), moved)
        assert run.started == expected, f"typing-aware close of {run.ids}: {expected}"


def aware(session: str, seen: int, out: Outcome) -> float | None:
    """When typing was first reported in ``session`` among its first ``seen`` events (a
    stop counts once the dispatcher knows the room), or None."""
    known = float("inf")
    for jid, (room, _) in out.arrivals.items():
        if room == session:
            known = min(known, out.senders[jid][1])
    for g in out.signals:
        if g.session == session and g.seq < seen and (g.until or g.seq > known):
            return g.at
    return None


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
    mode=st.sampled_from(["collect", "interrupt", "steer"]),
    cap=st.sampled_from([3, 5, 50]),
    typing_lens=typing_st,
)
@example(  # a typing signal from a sender whose messages were folded by the cap
    events=[(0, 0, 0), (0, 0, 1), (0, 0, 1), (0, 0, 2), (0, 0, 2), (1, 0, TYPING)],
    latencies=[0],
    wind_downs=[0],
    mode="collect",
    cap=3,
    typing_lens=[0],
)
def test_coalescer_invariants(
    events: list[tuple[int, int, int]],
    latencies: list[int],
    wind_downs: list[int],
    mode: Mode,
    cap: int,
    typing_lens: list[int],
) -> None:
    out = asyncio.run(simulate(events, latencies, wind_downs, mode, cap, typing_lens))
    check(out, mode)
