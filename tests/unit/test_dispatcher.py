"""Dispatcher contracts D1-D3 and D5 on a virtual clock, and the Rust seed tests ported."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import pytest

from bot.clock import VirtualClock
from bot.dispatcher import SUMMARY_LIMIT, SUMMARY_SENDER, Dispatcher, fold
from bot.messages import QueuedText
from config.errors import PermanentError

S = "web:lobby"
Mode = Literal["collect", "interrupt"]


@dataclass
class Turn:
    session: str
    batch: tuple[QueuedText, ...]
    started: float
    ended: float | None = None
    cancelled: bool = False

    @property
    def texts(self) -> list[str]:
        return [m.text for m in self.batch]


@dataclass
class FakeLLM:
    """A ``run_turn`` that sleeps on the virtual clock; records every spawn and overlap."""

    clock: VirtualClock
    latency: float = 1.0
    latency_by_text: dict[str, float] = field(default_factory=dict)
    fail_on: str | None = None
    turns: list[Turn] = field(default_factory=list)
    active: dict[str, int] = field(default_factory=dict)
    max_active: dict[str, int] = field(default_factory=dict)
    max_total: int = 0
    discarded: list[tuple[str, list[QueuedText]]] = field(default_factory=list)

    async def run_turn(self, session: str, batch: Sequence[QueuedText]) -> None:
        turn = Turn(session, tuple(batch), self.clock.now())
        self.turns.append(turn)
        self.active[session] = self.active.get(session, 0) + 1
        self.max_active[session] = max(self.max_active.get(session, 0), self.active[session])
        self.max_total = max(self.max_total, sum(self.active.values()))
        try:
            if self.fail_on is not None and any(m.text == self.fail_on for m in batch):
                raise RuntimeError("provider exploded")
            await self.clock.sleep(self.latency_by_text.get(batch[0].text, self.latency))
        except asyncio.CancelledError:
            turn.cancelled = True
            raise
        finally:
            turn.ended = self.clock.now()
            self.active[session] -= 1

    async def discard(self, session: str, dropped: Sequence[QueuedText]) -> None:
        self.discarded.append((session, list(dropped)))


class Ids:
    def __init__(self) -> None:
        self.next = 0

    def __call__(self, text: str, sender: str = "alice") -> QueuedText:
        self.next += 1
        return QueuedText(sender, text, self.next)


@pytest.fixture
def clock() -> VirtualClock:
    return VirtualClock()


@pytest.fixture
def llm(clock: VirtualClock) -> FakeLLM:
    return FakeLLM(clock)


@pytest.fixture
def msg() -> Ids:
    return Ids()


def make(llm: FakeLLM, clock: VirtualClock, **kw: Any) -> Dispatcher:
    return Dispatcher(run_turn=llm.run_turn, discard=llm.discard, clock=clock, **kw)


async def at(clock: VirtualClock, t: float) -> None:
    await clock.advance(t - clock.now())


# --- the three seed tests of prior-art §2.4, ported 1:1 (seconds instead of ms) ---------------


async def test_three_messages_never_three_concurrent_spawns(
    clock: VirtualClock, llm: FakeLLM, msg: Ids
) -> None:
    d = make(llm, clock, coalesce_window_s=0.05)
    llm.latency = 0.15
    d.submit(S, msg("one"))
    await at(clock, 0.02)
    d.submit(S, msg("two"))
    await at(clock, 0.3)
    d.submit(S, msg("three"))
    await at(clock, 0.5)
    assert 1 <= len(llm.turns) <= 2
    assert [t.texts for t in llm.turns] == [["one", "two"], ["three"]]
    assert llm.max_active[S] == 1


async def test_pending_messages_dispatched_after_run_completes(
    clock: VirtualClock, llm: FakeLLM, msg: Ids
) -> None:
    d = make(llm, clock, coalesce_window_s=0.05)
    llm.latency_by_text = {"first": 0.2, "second": 0.05}
    d.submit(S, msg("first"))
    await at(clock, 0.1)
    d.submit(S, msg("second"))
    d.submit(S, msg("third"))
    await at(clock, 0.6)
    assert len(llm.turns) == 2
    assert llm.turns[1].texts == ["second", "third"]
    assert llm.turns[1].started == pytest.approx(0.25)  # no extra window after the run
    assert llm.max_active[S] == 1


async def test_stop_cancels_run_and_clears_pending(
    clock: VirtualClock, llm: FakeLLM, msg: Ids
) -> None:
    d = make(llm, clock, coalesce_window_s=0.03)
    llm.latency = 0.5
    d.submit(S, msg("first"))
    await at(clock, 0.08)
    d.submit(S, msg("pending"))
    assert await d.stop(S) is True
    await at(clock, 0.7)
    assert len(llm.turns) <= 1
    assert llm.turns[0].cancelled
    assert [[m.text for m in b] for _, b in llm.discarded] == [["first", "pending"]]


# --- D1 coalescing ----------------------------------------------------------------------------


async def test_burst_within_window_is_one_turn_in_order(
    clock: VirtualClock, llm: FakeLLM, msg: Ids
) -> None:
    sizes: list[int] = []
    d = make(llm, clock, on_batch=sizes.append)
    for i, t in enumerate([0.0, 0.5, 1.0, 1.9]):
        await at(clock, t)
        d.submit(S, msg(f"m{i}", sender="bob" if i % 2 else "alice"))
    assert d.queue_depth() == 4 and not d.busy(S)
    await at(clock, 3.39)
    assert llm.turns == []
    await at(clock, 3.4)
    assert [t.texts for t in llm.turns] == [["m0", "m1", "m2", "m3"]]
    assert [m.sender for m in llm.turns[0].batch] == ["alice", "bob", "alice", "bob"]
    assert llm.turns[0].started == pytest.approx(3.4)  # last message + window
    assert sizes == [4] and d.busy(S) and d.queue_depth() == 0


async def test_max_wait_caps_a_continuous_stream(
    clock: VirtualClock, llm: FakeLLM, msg: Ids
) -> None:
    d = make(llm, clock, coalesce_window_s=1.5, max_wait_s=7.5)
    llm.latency = 0.1
    for i in range(12):
        await at(clock, float(i))
        d.submit(S, msg(f"m{i}"))
    await clock.run_until_idle(limit=30)
    assert [t.started for t in llm.turns] == [pytest.approx(7.5), pytest.approx(12.5)]
    assert [t.texts for t in llm.turns] == [
        [f"m{i}" for i in range(8)],
        [f"m{i}" for i in range(8, 12)],
    ]


# --- D2/D3 busy modes -------------------------------------------------------------------------


async def test_messages_during_a_turn_become_exactly_one_follow_up(
    clock: VirtualClock, llm: FakeLLM, msg: Ids
) -> None:
    d = make(llm, clock)
    llm.latency = 10.0
    d.submit(S, msg("first"))
    await at(clock, 2.0)
    assert d.busy(S)
    for i in range(5):
        await at(clock, 3.0 + i)
        d.submit(S, msg(f"q{i}"))
    assert d.queue_depth() == 5
    await clock.run_until_idle(limit=100)
    assert [t.texts for t in llm.turns] == [["first"], [f"q{i}" for i in range(5)]]
    assert llm.turns[1].started == pytest.approx(llm.turns[0].ended)
    assert llm.max_active[S] == 1


async def test_interrupt_cancels_the_turn_and_reruns_unanswered(
    clock: VirtualClock, llm: FakeLLM, msg: Ids
) -> None:
    d = make(llm, clock, busy_mode="interrupt")
    llm.latency = 10.0
    d.submit(S, msg("first"))
    await at(clock, 3.0)
    d.submit(S, msg("actually"))
    await clock.settle()
    assert llm.turns[0].cancelled and llm.turns[0].ended == pytest.approx(3.0)
    await at(clock, 3.5)
    d.submit(S, msg("also"))
    await clock.run_until_idle(limit=100)
    assert [t.texts for t in llm.turns] == [["first"], ["first", "actually", "also"]]
    assert llm.turns[1].started == pytest.approx(5.0)
    assert not llm.turns[1].cancelled


async def test_interrupt_waits_for_a_slow_cancel_before_the_next_turn(
    clock: VirtualClock, msg: Ids
) -> None:
    """D2 holds even when the cancelled turn needs time to wind down (killing a process tree)."""
    turns: list[tuple[float, float]] = []

    async def slow_to_die(session: str, batch: Sequence[QueuedText]) -> None:
        start = clock.now()
        try:
            await clock.sleep(10.0)
        except asyncio.CancelledError:
            await clock.sleep(4.0)
            raise
        finally:
            turns.append((start, clock.now()))

    async def discard(session: str, dropped: Sequence[QueuedText]) -> None:
        raise AssertionError("not stopped")

    d = Dispatcher(run_turn=slow_to_die, discard=discard, clock=clock, busy_mode="interrupt")
    d.submit(S, msg("first"))
    await at(clock, 2.0)
    d.submit(S, msg("second"))
    await at(clock, 4.0)  # the new batch closed at 3.5, the old turn is still dying
    assert d.busy(S) and len(turns) == 0
    await at(clock, 6.0)
    assert turns == [(1.5, 6.0)] and d.busy(S)
    await clock.run_until_idle(limit=100)
    assert turns[1] == (6.0, 16.0)


# --- stop ----------------------------------------------------------------------------------------


async def test_stop_during_coalesce_runs_nothing(
    clock: VirtualClock, llm: FakeLLM, msg: Ids
) -> None:
    d = make(llm, clock)
    d.submit(S, msg("a"))
    d.submit(S, msg("b"))
    assert await d.stop(S) is True
    await clock.run_until_idle(limit=100)
    assert llm.turns == []
    assert [(s, [m.text for m in b]) for s, b in llm.discarded] == [(S, ["a", "b"])]
    assert d.queue_depth() == 0


async def test_stop_during_a_run_cancels_awaits_and_discards(
    clock: VirtualClock, llm: FakeLLM, msg: Ids
) -> None:
    d = make(llm, clock)
    llm.latency = 10.0
    d.submit(S, msg("a"))
    d.submit(S, msg("b"))
    await at(clock, 2.0)
    d.submit(S, msg("c"))
    d.submit(S, msg("d"))
    assert await d.stop(S) is True
    turn = llm.turns[0]
    assert turn.cancelled and turn.ended is not None  # awaited: its cleanup already ran
    assert not d.busy(S) and d.queue_depth() == 0
    assert [m.text for m in llm.discarded[0][1]] == ["a", "b", "c", "d"]
    await clock.run_until_idle(limit=100)
    assert len(llm.turns) == 1


async def test_stop_unknown_and_idle_sessions(clock: VirtualClock, llm: FakeLLM, msg: Ids) -> None:
    d = make(llm, clock)
    assert await d.stop("web:nowhere") is False
    llm.latency = 0.5
    d.submit(S, msg("a"))
    await at(clock, 5.0)
    assert await d.stop(S) is True  # idle, not yet evicted
    assert llm.discarded == [] and len(llm.turns) == 1 and not llm.turns[0].cancelled


async def test_a_turn_can_stop_its_own_session(clock: VirtualClock, msg: Ids) -> None:
    d: Dispatcher
    seen: list[object] = []

    async def run_turn(session: str, batch: Sequence[QueuedText]) -> None:
        seen.append(await d.stop(session))
        await clock.sleep(1.0)
        seen.append("not reached")

    async def discard(session: str, dropped: Sequence[QueuedText]) -> None:
        seen.append([m.text for m in dropped])

    d = Dispatcher(run_turn=run_turn, discard=discard, clock=clock)
    d.submit(S, msg("stop yourself"))
    await clock.run_until_idle(limit=1000)
    assert seen == [["stop yourself"], True]
    assert d.session_count() == 0


# --- queue cap ----------------------------------------------------------------------------------


async def test_queue_cap_folds_and_loses_nothing(
    clock: VirtualClock, llm: FakeLLM, msg: Ids
) -> None:
    d = make(llm, clock, queue_cap=5)
    llm.latency = 50.0
    d.submit(S, msg("first"))
    await at(clock, 2.0)
    for i in range(20):
        d.submit(S, msg(f"q{i}", sender="bob" if i % 2 else "alice"))
        assert d.queue_depth() <= 5
    await clock.run_until_idle(limit=1000)
    follow_up = llm.turns[1].batch
    assert len(follow_up) == 5
    summary = follow_up[0]
    assert summary.sender == SUMMARY_SENDER
    assert summary.text.startswith("(16 earlier messages folded) alice: q0 / bob: q1 / alice: q2")
    assert summary.text.endswith("bob: q15")
    assert [m.text for m in follow_up[1:]] == ["q16", "q17", "q18", "q19"]
    ids = [i for t in llm.turns for m in t.batch for i in m.journal_ids]
    assert ids == list(range(1, 22))


async def test_coalescing_batch_is_capped_too(clock: VirtualClock, llm: FakeLLM, msg: Ids) -> None:
    d = make(llm, clock, queue_cap=3)
    for i in range(7):
        d.submit(S, msg(f"m{i}"))
    await clock.run_until_idle(limit=100)
    (turn,) = llm.turns
    assert [m.text for m in turn.batch[1:]] == ["m5", "m6"]
    assert turn.batch[0].text.startswith("(5 earlier messages folded) alice: m0 /")
    assert turn.batch[0].journal_ids == (1, 2, 3, 4, 5)


def test_fold_marks_what_it_cannot_show() -> None:
    long = [QueuedText("alice", "x" * 900, i) for i in range(1, 11)]
    summary = fold(long)
    assert summary.text.endswith(" … (+6 more)")  # 4 of 900 chars fit in the limit
    assert len(summary.text) < SUMMARY_LIMIT + 100
    assert summary.journal_ids == tuple(range(1, 11))
    again = fold([summary, QueuedText("bob", "short", 11)])
    assert again.text.startswith("(11 earlier messages folded) ")
    assert again.text.endswith(" … (+7 more)")  # order kept: nothing shown after a gap
    assert again.journal_ids == tuple(range(1, 12))
    small = fold(
        [fold([QueuedText("a", "1", 1), QueuedText("b", "2", 2)]), QueuedText("c", "3", 3)]
    )
    assert small.text == "(3 earlier messages folded) a: 1 / b: 2 / c: 3"
    assert small.ts == 0.0 and small.journal_id == 1


# --- failures, eviction, concurrency, shutdown -----------------------------------------------


async def test_a_failing_turn_does_not_break_the_session(
    clock: VirtualClock, llm: FakeLLM, msg: Ids, caplog: pytest.LogCaptureFixture
) -> None:
    d = make(llm, clock)
    llm.fail_on = "boom"
    d.submit(S, msg("boom"))
    with caplog.at_level(logging.ERROR, logger="musher.dispatcher"):
        await clock.run_until_idle(limit=5)
    assert any(S in r.getMessage() and r.exc_info for r in caplog.records)
    d.submit(S, msg("fine"))
    await clock.run_until_idle(limit=5)
    assert [t.texts for t in llm.turns] == [["boom"], ["fine"]]
    assert not d.busy(S)


async def test_idle_sessions_are_evicted(clock: VirtualClock, llm: FakeLLM, msg: Ids) -> None:
    d = make(llm, clock, idle_ttl_s=600.0)
    llm.latency = 1.0
    d.submit(S, msg("a"))
    await at(clock, 100.0)  # turn ended at 2.5
    d.submit(S, msg("b"))  # activity resets the ttl
    await at(clock, 650.0)
    assert d.session_count() == 1
    await at(clock, 702.6)
    assert d.session_count() == 0 and clock.pending() == 0
    await clock.run_until_idle()
    assert d.session_count() == 0 and clock.pending() == 0


async def test_two_sessions_run_concurrently(clock: VirtualClock, llm: FakeLLM, msg: Ids) -> None:
    d = make(llm, clock)
    llm.latency = 5.0
    d.submit("web:a", msg("a"))
    d.submit("slack:C1", msg("b"))
    await at(clock, 2.0)
    assert d.busy("web:a") and d.busy("slack:C1") and d.session_count() == 2
    await clock.run_until_idle()
    assert llm.max_total == 2
    assert llm.max_active == {"web:a": 1, "slack:C1": 1}
    assert d.session_count() == 0


async def test_aclose_cancels_turns_without_discarding(
    clock: VirtualClock, llm: FakeLLM, msg: Ids
) -> None:
    d = make(llm, clock)
    llm.latency = 50.0
    d.submit("web:a", msg("a"))
    d.submit("web:b", msg("b"))
    await at(clock, 2.0)
    d.submit("web:a", msg("queued"))
    d.submit("web:c", msg("coalescing"))
    await d.aclose()
    assert all(t.cancelled and t.ended is not None for t in llm.turns)
    assert llm.discarded == []
    assert clock.pending() == 0 and d.session_count() == 0 and d.queue_depth() == 0
    with pytest.raises(PermanentError, match="closed"):
        d.submit("web:a", msg("late"))
    await d.aclose()
    assert len(llm.turns) == 2


async def _in_the_finish_gap(clock: VirtualClock, mode: Mode, act: str) -> tuple[FakeLLM, bool]:
    """Act right after a turn's coroutine returned, before its task's done callbacks ran."""
    llm = FakeLLM(clock, latency=1.0)
    gate: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    result: list[bool] = []

    async def bystander() -> None:
        await gate  # woken by the turn itself: runs before the turn's done callbacks
        if act == "stop":
            result.append(await d.stop(S))
        else:
            d.submit(S, QueuedText("bob", "late", 2))

    async def run_turn(session: str, batch: Sequence[QueuedText]) -> None:
        await llm.run_turn(session, batch)
        if not gate.done():
            gate.set_result(None)

    d = Dispatcher(run_turn=run_turn, discard=llm.discard, clock=clock, busy_mode=mode)
    task = asyncio.create_task(bystander())
    d.submit(S, QueuedText("alice", "first", 1))
    await clock.run_until_idle(limit=100)
    await task
    return llm, bool(result and result[0])


@pytest.mark.parametrize("mode", ["collect", "interrupt"])
async def test_a_message_landing_as_a_turn_finishes_is_not_a_rerun(
    clock: VirtualClock, mode: Mode
) -> None:
    llm, _ = await _in_the_finish_gap(clock, mode, "submit")
    assert [t.texts for t in llm.turns] == [["first"], ["late"]]
    assert not any(t.cancelled for t in llm.turns)


async def test_a_stop_landing_as_a_turn_finishes_discards_nothing_answered(
    clock: VirtualClock,
) -> None:
    llm, stopped = await _in_the_finish_gap(clock, "collect", "stop")
    assert stopped and llm.discarded == []
    assert [t.texts for t in llm.turns] == [["first"]]
