"""Per-session lanes (bot/lanes.py): one action at a time per room, in slot order."""

from __future__ import annotations

import asyncio

from bot.lanes import Action, Lanes


def record(log: list[str], name: str, gate: asyncio.Event | None = None) -> Action:
    async def act() -> None:
        log.append(f"{name} start")
        if gate is not None:
            await gate.wait()
        log.append(f"{name} end")

    return act


async def test_a_lane_runs_in_slot_order_and_waits_for_unfilled_slots() -> None:
    lanes, log = Lanes(), []
    first, second, third = lanes.reserve("a"), lanes.reserve("a"), lanes.reserve("a")
    third.set_result(record(log, "third"))
    second.set_result(None)  # nothing to do for this one
    await asyncio.sleep(0)
    assert log == [] and lanes.busy("a")  # the first slot is not filled yet
    first.set_result(record(log, "first"))
    await lanes.join()
    assert log == ["first start", "first end", "third start", "third end"]
    assert not lanes.busy("a") and len(lanes) == 0  # an idle room costs nothing


async def test_rooms_do_not_wait_for_each_other() -> None:
    lanes, log, gate, quick_done = Lanes(), [], asyncio.Event(), asyncio.Event()

    async def quick() -> None:
        log.append("quick")
        quick_done.set()

    lanes.reserve("slow").set_result(record(log, "slow", gate))
    lanes.reserve("quick").set_result(quick)
    await quick_done.wait()
    assert log == ["slow start", "quick"]
    gate.set()
    await lanes.join()
    assert log[-1] == "slow end"


async def test_a_failing_action_does_not_stop_the_lane() -> None:
    lanes, log = Lanes(), []

    async def boom() -> None:
        raise RuntimeError("bad command")

    lanes.reserve("a").set_result(boom)
    lanes.reserve("a").set_result(record(log, "next"))
    await lanes.join()
    assert log == ["next start", "next end"]


async def test_aclose_cancels_what_is_left_and_its_unfilled_slots() -> None:
    lanes, log, gate = Lanes(), [], asyncio.Event()
    lanes.reserve("a").set_result(record(log, "stuck", gate))
    unfilled = lanes.reserve("a")
    await lanes.aclose(grace_s=0)
    assert log == ["stuck start"] and unfilled.cancelled()
    assert len(lanes) == 0
