"""The event bus (E1, R15): independent subscribers, lag caught up by reconcile, ordered stop."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from bot.daemon import Core
from config import load_settings
from pipeline.bus import Bus
from pipeline.engine import project_slug
from pipeline.events import ItemCreated, PipelineEvent
from tests.unit.pipeline_env import PROJECT, PipelineEnv, pipeline_env, wait_until

PROJECT_OF_CWD = project_slug(Path.cwd().name)


class Recorder:
    """Keeps every event's item number; counts reconciles; notes when it is closed."""

    def __init__(self, name: str, closed: list[str] | None = None) -> None:
        self.name = name
        self.seen: list[int] = []
        self.reconciles = 0
        self._closed = closed if closed is not None else []

    async def handle(self, event: PipelineEvent) -> None:
        self.seen.append(event.number)

    async def reconcile(self) -> None:
        self.reconciles += 1

    async def aclose(self) -> None:
        self._closed.append(self.name)


class Raises(Recorder):
    async def handle(self, event: PipelineEvent) -> None:
        self.seen.append(event.number)
        raise RuntimeError("this subscriber always fails")

    async def reconcile(self) -> None:
        self.reconciles += 1
        raise RuntimeError("and so does its reconcile")


class Hangs(Recorder):
    async def handle(self, event: PipelineEvent) -> None:
        self.seen.append(event.number)
        await asyncio.Event().wait()


class Gated(Recorder):
    """Blocks in handle() until the gate opens; its reconcile reads how many items exist."""

    def __init__(self, name: str, env: PipelineEnv) -> None:
        super().__init__(name)
        self.gate = asyncio.Event()
        self.env = env
        self.known_at_reconcile: list[int] = []

    async def handle(self, event: PipelineEvent) -> None:
        await self.gate.wait()
        self.seen.append(event.number)

    async def reconcile(self) -> None:
        self.reconciles += 1
        self.known_at_reconcile.append(len(await self.env.engine.items(PROJECT)))


@pytest.fixture
async def env(tmp_path: Path) -> AsyncIterator[PipelineEnv]:
    async with pipeline_env(tmp_path) as e:
        yield e


async def test_r15_a_failing_and_a_hanging_subscriber_cost_the_others_nothing(
    env: PipelineEnv,
) -> None:
    bus = Bus(queue_size=8, step_timeout_s=30)
    bus.connect(env.engine)
    first, last = Recorder("first"), Recorder("last")
    raises, hangs = Raises("raises"), Hangs("hangs")
    for subscriber in (first, raises, hangs, last):
        bus.add(subscriber)
    await bus.start()

    for i in range(60):
        await env.story(f"story {i + 1}")
    await wait_until(lambda: len(first.seen) == 60 and len(last.seen) == 60)

    assert first.seen == last.seen == list(range(1, 61))  # every event, in commit order
    assert raises.seen == list(range(1, 61))  # a subscriber that raises keeps receiving
    assert hangs.seen == [1]  # stuck on its first event …
    stats = bus.stats()
    assert stats["hangs"].dropped == 60 - 1 - 8  # … its queue filled, then it lagged alone
    assert stats["raises"].failures == 61  # every handle, and the startup reconcile
    assert stats["first"].dropped == stats["last"].dropped == 0
    assert stats["first"].failures == stats["last"].failures == 0

    await bus.aclose(drain_timeout_s=0.05)  # the hung one is cancelled, not waited for
    assert not [t for t in asyncio.all_tasks() if t.get_name().startswith("bus:")]


async def test_a_lagged_subscriber_is_reconciled_once_its_queue_drains(env: PipelineEnv) -> None:
    bus = Bus(reconcile_interval_s=3600, queue_size=2)
    bus.connect(env.engine)
    gated = Gated("gated", env)
    bus.add(gated)
    await bus.start()
    await wait_until(lambda: gated.reconciles == 1)  # the startup reconcile

    for i in range(10):
        await env.story(f"story {i + 1}")
    assert bus.stats()["gated"].dropped == 10 - 1 - 2  # one in hand, two queued
    gated.gate.set()

    await wait_until(lambda: gated.reconciles == 2)
    assert gated.seen == [1, 2, 3]  # what it got …
    assert gated.known_at_reconcile == [0, 10]  # … and its reconcile saw all ten items
    for i in range(2):  # no longer lagged: events flow again, no extra reconcile
        await env.story(f"more {i}")
    await wait_until(lambda: len(gated.seen) == 5)
    assert gated.reconciles == 2
    await bus.aclose()


async def test_events_before_start_wait_for_the_subscribers(env: PipelineEnv) -> None:
    bus = Bus()
    bus.connect(env.engine)  # connected early, as the daemon does (lesson 1078)
    recorder = Recorder("early")
    bus.add(recorder)
    await env.story("made while the transports log in")
    await asyncio.sleep(0)
    assert recorder.seen == []

    await bus.start()
    await wait_until(lambda: recorder.seen == [1])
    assert recorder.reconciles == 1
    await bus.aclose()


async def test_reconcile_runs_at_start_and_every_interval(env: PipelineEnv) -> None:
    bus = Bus(reconcile_interval_s=0.01)
    recorder = Recorder("periodic")
    bus.add(recorder)
    await bus.start()
    await wait_until(lambda: recorder.reconciles >= 3)
    await bus.aclose()


async def test_aclose_stops_subscribers_in_order_and_disconnects(env: PipelineEnv) -> None:
    closed: list[str] = []
    bus = Bus()
    bus.connect(env.engine)
    subscribers = [Recorder(name, closed) for name in ("notifier", "audit", "deps", "timers")]
    for subscriber in subscribers:
        bus.add(subscriber)
    await bus.start()
    await env.story("one")
    await bus.aclose()

    assert closed == ["notifier", "audit", "deps", "timers"]
    assert all(s.seen == [1] for s in subscribers)  # queued events were finished first
    await env.story("after the bus stopped")
    await asyncio.sleep(0)
    assert all(s.seen == [1] for s in subscribers)
    await bus.aclose()  # idempotent
    assert closed == ["notifier", "audit", "deps", "timers"]


async def test_subscriber_names_are_unique() -> None:
    bus = Bus()
    bus.add(Recorder("x"))
    with pytest.raises(ValueError, match="already on the bus"):
        bus.add(Recorder("x"))


async def test_a_subscriber_added_after_start_starts_at_once(env: PipelineEnv) -> None:
    bus = Bus()
    bus.connect(env.engine)
    await bus.start()
    late = Recorder("web-board")
    bus.add(late)
    await env.story("seen by the late subscriber")
    await wait_until(lambda: late.seen == [1] and late.reconciles == 1)
    assert isinstance(env.events[0], ItemCreated)
    await bus.aclose()


async def test_r15_the_daemon_stays_ready_and_rooms_hear_every_change(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A real (in-process) daemon with a raising and a hanging subscriber on its bus."""
    from bot import daemon as daemon_module

    bad = [Raises("raises"), Hangs("hangs")]
    build = daemon_module.build_core

    def build_with_bad_subscribers(*args: Any, **kwargs: Any) -> Core:
        core = build(*args, **kwargs)
        for subscriber in bad:
            core.pipeline.bus.add(subscriber)
        return core

    monkeypatch.setattr(daemon_module, "build_core", build_with_bad_subscribers)
    env = {"MUSHER_HTTP__PORT": "0", "MUSHER_LLM__PROVIDER": "echo",
           "MUSHER_DAEMON__NOTIFY_WINDOW_S": "0.05"}  # fmt: skip
    daemon = daemon_module.Daemon(load_settings(None, env), tmp_path / "data")
    running = asyncio.create_task(daemon.run(), name="daemon")
    try:
        await wait_until(lambda: daemon.health.get("bus") == "ok")
        async with httpx.AsyncClient(base_url=daemon.url, timeout=10) as client:

            async def say(room: str, text: str) -> None:
                body = {"sender": "alice", "text": text}
                response = await client.post(f"/api/v1/rooms/{room}/messages", json=body)
                assert response.status_code == 202

            async def bot_texts(room: str) -> list[str]:
                response = await client.get(f"/api/v1/rooms/{room}/messages")
                return [m["text"] for m in response.json()["messages"] if m["role"] == "bot"]

            await say("watch", "status")  # the watching room follows the default project
            await wait_until_async(lambda: bot_texts("watch"), 1)
            for i in range(1, 31):  # one after another, as a person types them (no
                await say("lobby", f"new story Story {i}")  # burst for the notifier to fold)
                await wait_until_async(lambda: bot_texts("lobby"), i)
            texts = await wait_until_async(lambda: bot_texts("watch"), 2, joined_lines=30)
            lines = "\n".join(texts[1:]).splitlines()
            assert lines == [f"#{i} Story {i}: new story (by alice)" for i in range(1, 31)]
            assert (await client.get("/readyz")).status_code == 200
            lobby = await bot_texts("lobby")  # its own changes: its replies said it all
            assert lobby == [f"Created #{i} Story {i} (story) in {PROJECT_OF_CWD}." for i in
                             range(1, 31)]  # fmt: skip
        assert bad[0].seen == list(range(1, 31))
        assert bad[1].seen == [1]
    finally:
        daemon.stopping.set()
        await asyncio.wait_for(running, 15)


async def wait_until_async(
    read: Callable[[], Awaitable[list[str]]], count: int, joined_lines: int = 0
) -> list[str]:
    """Poll ``read()`` until it has ``count`` texts (and, if given, that many lines after
    the first text); return them."""
    async with asyncio.timeout(10):
        while True:
            texts = await read()
            lines = "\n".join(texts[1:]).splitlines()
            if len(texts) >= count and len(lines) >= joined_lines:
                return texts
            await asyncio.sleep(0.02)
