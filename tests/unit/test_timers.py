"""Timers (T1): parsing, firing once with re-validation, dying with their item, misfires."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from bot.clock import VirtualClock
from bot.commands.registry import CommandContext
from bot.daemon import Core, build_core
from bot.messages import Session
from config import load_settings
from pipeline.errors import PipelineError
from pipeline.model import Backlog, Coding, ItemKind, Qa, SystemOrigin
from pipeline.ops import AddTimer, CancelTimer
from pipeline.store import StoreWriteError, TimerRecord
from pipeline.timers import Outcome, Timers
from pipeline.timespec import format_span, format_when, parse_action, parse_when
from pipeline.transitions import Abandon, Freeze, Move
from tests.unit.pipeline_env import ALICE, PROJECT, PipelineEnv, pipeline_env, wait_until

LONDON = ZoneInfo("Europe/London")
NOON_BST = datetime(2025, 6, 2, 11, 0, tzinfo=UTC).timestamp()  # Mon 2 Jun 2025, 12:00 BST


# --- parsing and formatting ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [("+30m", NOON_BST + 1800), ("+2h", NOON_BST + 7200), ("+1d", NOON_BST + 86400),
     ("+5s", NOON_BST + 5), (" +45M ", NOON_BST + 2700),
     ("13:15", datetime(2025, 6, 2, 12, 15, tzinfo=UTC).timestamp()),  # later today, BST
     ("9:05", datetime(2025, 6, 3, 8, 5, tzinfo=UTC).timestamp()),  # passed: tomorrow
     ("12:00", datetime(2025, 6, 3, 11, 0, tzinfo=UTC).timestamp())],  # now: tomorrow
)  # fmt: skip
def test_when_is_relative_or_the_next_wall_time_in_the_zone(text: str, expected: float) -> None:
    assert parse_when(text, NOON_BST, LONDON) == expected


def test_hh_mm_follows_the_zone_across_a_clock_change() -> None:
    before_change = datetime(2025, 10, 25, 22, 0, tzinfo=UTC).timestamp()  # Sat 23:00 BST
    fire_at = parse_when("09:00", before_change, LONDON)  # Sunday, after the clocks go back
    assert fire_at == datetime(2025, 10, 26, 9, 0, tzinfo=UTC).timestamp()  # 09:00 GMT


@pytest.mark.parametrize("text", ["+0m", "+400d", "25:00", "12:60", "soon", "+5", "5m", ""])
def test_bad_times_are_refused_with_the_forms_that_work(text: str) -> None:
    with pytest.raises(PipelineError, match=r"HH:MM|up to a year"):
        parse_when(text, NOON_BST, LONDON)


def test_actions_name_the_stage_they_move_to() -> None:
    assert parse_action("start") == "coding"
    assert parse_action("Move QA") == "qa"
    for bad in ("", "move", "move nowhere", "stop", "move qa now"):
        with pytest.raises(PipelineError, match=r"Actions: start, or move STAGE \(backlog,"):
            parse_action(bad)


def test_times_read_back_in_the_zone() -> None:
    assert format_when(NOON_BST + 1800, LONDON) == "Mon 2 Jun 12:30 (Europe/London)"
    assert format_when(NOON_BST + 5, LONDON) == "Mon 2 Jun 12:00:05 (Europe/London)"
    assert [format_span(s) for s in (5, 1800, 7500, 93600, -3)] == ["5s", "30m", "2h 5m",
                                                                   "1d 2h", "0s"]  # fmt: skip


# --- the service over a real store -------------------------------------------------------------


class Env:
    def __init__(self, env: PipelineEnv) -> None:
        self.env = env
        self.reports: list[tuple[str, str]] = []
        self.timers = self.new_timers()

    def new_timers(self) -> Timers:
        """A timer service as a (re)started daemon builds it."""
        return Timers(self.env.engine, grace_s=600, report=self.report)

    def report(self, timer: TimerRecord, text: str) -> None:
        self.reports.append((timer.id, text))

    async def stage(self, number: int) -> Any:
        item = await self.env.engine.find(PROJECT, number)
        return None if item is None else item.stage

    async def row(self, at: float, number: int = 1, target: str = "coding", tid: str = "t1") -> str:
        await self.env.store.append(AddTimer(tid, PROJECT, number, at, {"move": target}), ALICE)
        return tid


@pytest.fixture
async def t(store_url: str, tmp_path: Path) -> AsyncIterator[Env]:
    """On both store backends (K1: T1 holds on each)."""
    async with pipeline_env(tmp_path, timezone="Europe/London", url=store_url) as env:
        await env.story("Login page")
        e = Env(env)
        yield e
        await e.timers.aclose()


async def test_a_timer_moves_its_item_once_with_its_row_removed_in_the_same_commit(
    t: Env,
) -> None:
    record = await t.timers.add(PROJECT, 1, t.env.clock.now + 3600, "coding", ALICE)
    assert re.fullmatch(r"t[0-9a-f]{6}", record.id)
    assert t.timers.scheduled() == {record.id}
    assert [r.id for r in await t.timers.pending(PROJECT)] == [record.id]

    assert await t.timers.fire(record.id) is Outcome.MOVED
    assert await t.stage(1) == Coding()
    assert await t.timers.pending() == [] and t.timers.scheduled() == set()
    cancel, move = (await t.env.ops())[-2:]
    assert (cancel[1], move[1]) == ("timer.cancel", "item.update")
    assert cancel[0] + 1 == move[0] and cancel[2] == move[2]  # adjacent, same origin
    assert t.env.events[-1].origin == SystemOrigin("timers", record.id)

    assert await t.timers.fire(record.id) is Outcome.GONE  # fired already: nothing happens
    assert len(await t.env.ops()) == move[0]
    assert t.reports == []


async def test_a_firing_timer_does_nothing_when_the_item_is_already_there(t: Env) -> None:
    record = await t.timers.add(PROJECT, 1, t.env.clock.now + 60, "coding", ALICE)
    await t.env.engine.apply(PROJECT, 1, Move("coding"), ALICE)
    updates = len(t.env.events)

    assert await t.timers.fire(record.id) is Outcome.SKIPPED
    assert len(t.env.events) == updates
    assert t.reports == [(record.id, f"⏰ Timer {record.id} did nothing: #1 Login page is"
                                     " already in coding. Removed.")]  # fmt: skip
    assert await t.timers.pending() == []
    origin = f'{{"reason":"{record.id} skipped","system":"timers"}}'
    assert (await t.env.ops())[-1][1:] == ("timer.cancel", origin)


async def test_a_refused_move_is_reported_and_the_timer_removed(t: Env) -> None:
    record = await t.timers.add(PROJECT, 1, t.env.clock.now + 60, "qa", ALICE)
    await t.env.engine.apply(PROJECT, 1, Freeze(), ALICE)
    assert await t.timers.fire(record.id) is Outcome.SKIPPED
    [(_, text)] = t.reports
    assert text.startswith(f"⏰ Timer {record.id} did nothing: #1") and "frozen" in text
    assert await t.timers.pending() == []


@pytest.mark.parametrize("kill", ["purge", "abandon", "done"])
async def test_timers_die_with_their_item(t: Env, kill: str) -> None:
    record = await t.timers.add(PROJECT, 1, t.env.clock.now + 60, "qa", ALICE)
    engine = t.env.engine
    if kill == "purge":
        assert await engine.purge(PROJECT, 1, ALICE) == ["item row", "1 timer"]
    elif kill == "abandon":
        await engine.apply(PROJECT, 1, Abandon(), ALICE)
    else:
        for stage in ("coding", "done"):
            await engine.apply(PROJECT, 1, Move(stage), ALICE)
    for event in t.env.events:
        await t.timers.handle(event)

    assert await t.timers.pending() == []  # the store removed the row …
    assert t.timers.scheduled() == set()  # … and the scheduler job went with the event
    ops = len(await t.env.ops())
    assert await t.timers.fire(record.id) is Outcome.GONE
    assert len(await t.env.ops()) == ops and t.reports == []
    with pytest.raises(PipelineError, match=r"finished|No item"):
        await t.timers.add(PROJECT, 1, t.env.clock.now + 60, "qa", ALICE)


async def test_a_timer_missed_within_the_grace_fires_once_at_startup(t: Env) -> None:
    await t.row(t.env.clock.now - 300)  # due five minutes ago, while the daemon was down
    timers = t.new_timers()
    await timers.reconcile()
    assert await t.stage(1) == Coding()
    ops = len(await t.env.ops())
    await timers.reconcile()
    await t.new_timers().reconcile()  # and after another restart: nothing more
    assert len(await t.env.ops()) == ops
    assert t.reports == []


async def test_a_timer_missed_beyond_the_grace_is_reported_and_removed(t: Env) -> None:
    t.env.clock.now = NOON_BST
    await t.row(NOON_BST - 3600)
    await t.new_timers().reconcile()
    assert await t.stage(1) == Backlog()
    assert t.reports == [
        (
            "t1",
            "⏰ Timer t1 missed: it was due Mon 2 Jun 11:00 (Europe/London),"
            " 1h ago, while musher was down. Removed; nothing was moved.",
        )
    ]
    assert await t.timers.pending() == []


async def test_a_failed_write_leaves_the_timer_to_fire_later_exactly_once(
    t: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    tid = await t.row(t.env.clock.now + 60)
    real_write = t.env.db.write

    async def broken(job: Any) -> Any:
        raise OSError("disk full")

    monkeypatch.setattr(t.env.db, "write", broken)
    with pytest.raises(StoreWriteError):
        await t.timers.fire(tid)  # as a crash mid-firing would: nothing of it committed
    monkeypatch.setattr(t.env.db, "write", real_write)
    assert await t.stage(1) == Backlog()
    assert [r.id for r in await t.timers.pending()] == [tid]

    t.env.clock.now += 60
    await t.timers.reconcile()  # the next pass fires it
    assert await t.stage(1) == Coding()
    assert sum(1 for e in t.env.events if e.origin == SystemOrigin("timers", tid)) == 1


async def test_reconcile_rebuilds_the_jobs_from_the_rows(t: Env) -> None:
    future = await t.row(t.env.clock.now + 3600, tid="t-future")
    gone = (await t.timers.add(PROJECT, 1, t.env.clock.now + 60, "qa", ALICE)).id
    await t.env.store.append(CancelTimer(gone, PROJECT), ALICE)  # removed behind its back

    await t.timers.reconcile()
    assert t.timers.scheduled() == {future}
    restarted = t.new_timers()
    await restarted.reconcile()
    assert restarted.scheduled() == {future}
    await restarted.aclose()


async def test_the_scheduler_fires_a_due_timer(t: Env) -> None:
    t.timers.start()
    await t.timers.add(PROJECT, 1, t.env.clock.now + 1, "coding", ALICE)  # ≤ 1 s of real time
    await wait_until(lambda: any(e.origin.to_dict().get("system") == "timers"
                                 for e in t.env.events))  # fmt: skip
    assert await t.stage(1) == Coding()
    assert t.timers.scheduled() == set()


# --- the commands ------------------------------------------------------------------------------


@pytest.fixture
async def chat(tmp_path: Path) -> AsyncIterator[tuple[Core, PipelineEnv]]:
    async with pipeline_env(tmp_path, timezone="Europe/London") as env:
        env.clock.now = NOON_BST
        settings = load_settings(None, {"MUSHER_LLM__PROVIDER": "none"})
        core = build_core(settings, env.db, env.store, engine=env.engine, clock=VirtualClock())
        await env.story("Login page")
        yield core, env
        await core.pipeline.bus.aclose()
        await core.dispatcher.aclose()


async def say(core: Core, text: str) -> str:
    invocation = core.registry.match(text)
    assert invocation is not None
    ctx = CommandContext(Session.of("web:lobby"), "alice", True)
    return (await core.registry.run(invocation, ctx)).text


async def test_timer_commands_set_list_and_cancel(chat: tuple[Core, PipelineEnv]) -> None:
    core, env = chat
    reply = await say(core, "timer #1 13:30 start")
    [tid] = re.findall(r"Timer (t[0-9a-f]{6}):", reply)
    assert reply == (
        f"⏰ Timer {tid}: #1 Login page → coding at Mon 2 Jun 13:30"
        f" (Europe/London), in 1h 30m. Cancel with `timer cancel {tid}`."
    )
    reply = await say(core, "timer 1 +30m move coding")
    [other] = re.findall(r"Timer (t[0-9a-f]{6}):", reply)
    assert "→ coding at Mon 2 Jun 12:30 (Europe/London), in 30m." in reply

    assert await say(core, "timers") == (
        f"Timers in {PROJECT}:\n"
        f"  {other}: #1 → coding at Mon 2 Jun 12:30 (Europe/London) (in 30m)\n"
        f"  {tid}: #1 → coding at Mon 2 Jun 13:30 (Europe/London) (in 1h 30m)"
    )
    assert await say(core, f"timer cancel {other}") == f"Cancelled timer {other}: #1 → coding."
    assert await say(core, f"timer cancel {other}") == f"No timer {other}. See `timers`."
    assert core.pipeline.timers.scheduled() == {tid}
    assert core.pipeline.followers.following(PROJECT) == ["web:lobby"]  # timer use = following

    env.clock.now += 5400
    assert await core.pipeline.timers.fire(tid) is Outcome.MOVED
    item = await env.engine.find(PROJECT, 1)
    assert item is not None and item.stage == Coding()
    assert await say(core, "timers") == f"No timers in {PROJECT}."


@pytest.mark.parametrize(
    ("text", "reply"),
    [("timer 1 soon start", "Usage: timer N <HH:MM|+30m> <start|move STAGE>\nwhen: use HH:MM"),
     ("timer 1 +30m fly", "Usage: timer N <HH:MM|+30m> <start|move STAGE>\nActions: start, or"),
     ("timer 1 +30m", "Usage: timer N <HH:MM|+30m> <start|move STAGE>"),
     ("timer 1 24:00 start", "'24:00' is not a time: use HH:MM"),
     ("timer 9 +5m start", f"No item #9 in {PROJECT}."),
     ("timer cancel", "Usage: timer cancel ID")],
)  # fmt: skip
async def test_bad_timer_commands_change_nothing(
    chat: tuple[Core, PipelineEnv], text: str, reply: str
) -> None:
    core, env = chat
    ops = len(await env.ops())
    assert (await say(core, text)).startswith(reply)
    assert len(await env.ops()) == ops


async def test_a_finished_item_takes_no_timer(chat: tuple[Core, PipelineEnv]) -> None:
    core, env = chat
    await env.engine.create(PROJECT, ItemKind.BUG, "Old", ALICE)
    await env.engine.apply(PROJECT, 2, Abandon(), ALICE)
    assert await say(core, "timer 2 +5m start") == (
        "#2 is in abandoned; cannot move to coding. It cannot be moved."
    )
    assert await core.pipeline.timers.pending() == []
    item = await env.engine.find(PROJECT, 1)
    assert item is not None and item.stage != Qa()
