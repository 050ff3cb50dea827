"""Ingress on a real journal: own messages, mentions, ambient, strangers, admins (I2–I4, C1)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from bot.access import AccessPolicies, AccessPolicy
from bot.clock import VirtualClock
from bot.commands.args import NoArgs
from bot.commands.registry import CommandContext
from bot.daemon import Core, build_core
from bot.db import Database
from bot.ingress import Ingress
from bot.journal import Journal, Kind
from bot.llm.base import Done, TextDelta, TurnEvent, TurnRequest
from bot.messages import InboundMessage, Reply
from bot.schema import DAEMON_SCHEMA
from bot.transport import Capabilities, FeedResult
from config import load_settings
from pipeline.keys import load_or_create
from pipeline.store import OpStore
from tests.fakes.memory_transport import MemoryTransport


class Recorder:
    """A provider that records each turn's batch and answers at once, or (``hold``) keeps
    the turn open until it is ended, noting whether its ``cancel`` event was set by then."""

    name = "recorder"

    def __init__(self) -> None:
        self.turns: list[list[str]] = []
        self.hold = False
        self.holding = asyncio.Event()
        self.cancel_seen: list[bool] = []

    async def run(
        self, request: TurnRequest, cancel: asyncio.Event
    ) -> AsyncGenerator[TurnEvent, None]:
        self.turns.append([f"{m.sender}: {m.text}" for m in request.batch])
        try:
            if self.hold:
                self.holding.set()
                await asyncio.Event().wait()
            yield TextDelta("ok")
            yield Done()
        finally:
            self.cancel_seen.append(cancel.is_set())

    async def reset(self, session: str) -> None:
        return None

    async def aclose(self) -> None:
        return None


@dataclass
class Setup:
    core: Core
    ingress: Ingress
    provider: Recorder
    transport: MemoryTransport
    clock: VirtualClock

    async def settle(self) -> None:
        """Until everything fed has been acted on and every batch answered (virtual time)."""
        core = self.core
        while True:
            await core.lanes.join()
            await self.clock.advance(0)  # a window of 0 ms: due batches close now
            await core.dispatcher.join()
            if not core.lanes and core.dispatcher.queue_depth() == 0:
                return


@pytest.fixture
async def setup(tmp_path: Path) -> AsyncIterator[Setup]:
    env = {
        "MUSHER_DISPATCHER__COALESCE_WINDOW_MS": "0",
        "MUSHER_TRANSPORTS__WEB__ENABLED": "false",
    }
    settings = load_settings(None, env)
    db = await Database.open(tmp_path / "m.db", DAEMON_SCHEMA)
    provider, clock = Recorder(), VirtualClock()
    store = await OpStore.open(db, load_or_create(tmp_path))
    access = AccessPolicies({"chat": AccessPolicy.build(["alice", "bob"], ["alice"])})
    core = build_core(settings, db, store, provider=provider, clock=clock, access=access)
    transport = MemoryTransport(capabilities=Capabilities(max_length=50))
    core.outbox.attach(transport)
    ingress = core.ingress({"chat": transport.identities})
    await transport.start(ingress)
    yield Setup(core, ingress, provider, transport, clock)
    await transport.aclose()
    await core.lanes.aclose(0)
    await core.dispatcher.aclose()
    await db.aclose()


def msg(
    text: str, sender: str = "bob", event: str | None = None, mentioned: bool = False
) -> InboundMessage:
    return InboundMessage("chat", "!room", sender, event or text, 0.0, text, mentioned=mentioned)


async def test_unaddressed_messages_in_a_shared_room_cost_nothing(setup: Setup) -> None:
    ingress, provider, transport = setup.ingress, setup.provider, setup.transport
    assert await ingress.feed(msg("just chatting")) is FeedResult.IGNORED
    await setup.settle()
    assert provider.turns == [] and transport.sent == []


async def test_a_mention_is_stripped_and_the_text_reaches_the_llm(setup: Setup) -> None:
    ingress, provider, transport = setup.ingress, setup.provider, setup.transport
    assert await ingress.feed(msg("@bot:example.org: what is up?")) is FeedResult.ACCEPTED
    await setup.settle()
    assert provider.turns == [["bob: what is up?"]]
    assert [(s.session, s.text) for s in transport.sent] == [("chat:!room", "ok")]


async def test_ambient_on_makes_every_message_addressed(setup: Setup) -> None:
    ingress, provider = setup.ingress, setup.provider
    await ingress.feed(msg("musher: ambient on", event="a"))
    await ingress.feed(msg("no mention needed", event="b"))
    await setup.settle()
    assert provider.turns == [["bob: no mention needed"]]
    await ingress.feed(msg("ambient off", event="c"))
    await ingress.feed(msg("ignored again", event="d"))
    await setup.settle()
    assert len(provider.turns) == 1
    room = await setup.core.engine.store.room("chat:!room")  # kept in the signed op log
    assert room is not None and room.ambient is False


async def test_the_bots_own_messages_are_never_processed(setup: Setup) -> None:
    ingress, provider = setup.ingress, setup.provider
    result = await ingress.feed(msg("help", sender="@bot:example.org", mentioned=True))
    assert result is FeedResult.IGNORED
    await setup.settle()
    assert provider.turns == []


async def test_strangers_get_nothing_or_one_refusal_a_day(setup: Setup) -> None:
    ingress, provider, transport = setup.ingress, setup.provider, setup.transport
    assert await ingress.feed(msg("hi", sender="mallory", mentioned=True)) is FeedResult.REFUSED
    assert transport.sent == []
    setup.core.settings.access.reply_to_strangers = True
    await ingress.feed(msg("hi again", sender="mallory", mentioned=True))
    await ingress.feed(msg("and again", sender="mallory", mentioned=True))
    await setup.settle()
    refusal = " ".join(transport.texts())  # split at the 50-char limit
    assert refusal == "Sorry, I only answer people I was set up for. Ask an admin to add you."
    assert provider.turns == []


async def test_commands_never_reach_the_llm_and_replies_are_split(setup: Setup) -> None:
    ingress, provider, transport = setup.ingress, setup.provider, setup.transport
    await ingress.feed(msg("help", mentioned=True))
    await ingress.feed(msg("stop now please", mentioned=True))
    await setup.settle()
    assert provider.turns == []
    texts = transport.texts()
    assert all(len(t) <= 50 for t in texts)
    assert texts[0] == "Commands:" and texts[-1] == "Usage: stop"


async def test_duplicates_are_acknowledged_and_dropped(setup: Setup) -> None:
    ingress, provider = setup.ingress, setup.provider
    assert await ingress.feed(msg("hello", event="e1", mentioned=True)) is FeedResult.ACCEPTED
    assert await ingress.feed(msg("hello", event="e1", mentioned=True)) is FeedResult.DUPLICATE
    await setup.settle()
    assert provider.turns == [["bob: hello"]]


async def test_intake_returns_before_the_command_runs_and_a_room_keeps_its_order(
    setup: Setup,
) -> None:
    ingress, transport, registry = setup.ingress, setup.transport, setup.core.registry
    gate = asyncio.Event()

    @registry.command("wait", summary="Wait for the gate", usage="wait", args=NoArgs)
    async def wait(ctx: CommandContext, args: NoArgs, *, gate: asyncio.Event) -> Reply:
        await gate.wait()
        return Reply("waited")

    registry.provide(gate=gate)
    assert await ingress.feed(msg("wait", mentioned=True)) is FeedResult.ACCEPTED
    assert await ingress.feed(msg("help stop", mentioned=True)) is FeedResult.ACCEPTED
    other = InboundMessage("chat", "!other", "bob", "o1", 0.0, "help stop", mentioned=True)
    assert await ingress.feed(other) is FeedResult.ACCEPTED
    sent = await transport.wait_sent(1)
    assert [s.session for s in sent] == ["chat:!other"]  # not held up by !room
    gate.set()
    await setup.settle()
    assert transport.texts("chat:!room")[0] == "waited"  # journal order within the room
    assert transport.texts("chat:!room")[1].startswith("Usage: stop")


async def test_a_message_right_after_ambient_on_is_addressed(setup: Setup) -> None:
    ingress, provider = setup.ingress, setup.provider
    assert await ingress.feed(msg("ambient on", event="a", mentioned=True)) is FeedResult.ACCEPTED
    assert await ingress.feed(msg("no mention", event="b")) is FeedResult.ACCEPTED
    await setup.settle()
    assert provider.turns == [["bob: no mention"]]
    assert await setup.core.engine.ambient("chat:!room")


async def test_stop_ends_the_running_turn_through_its_cancel_event(setup: Setup) -> None:
    ingress, provider, transport = setup.ingress, setup.provider, setup.transport
    provider.hold = True
    await ingress.feed(msg("think hard", mentioned=True))
    await setup.clock.advance(0)
    await provider.holding.wait()
    await ingress.feed(msg("stop", mentioned=True))
    await setup.settle()
    assert provider.cancel_seen == [True]  # the provider was told why it is ending
    assert transport.texts() == ["Stopped."]
    assert setup.core.dispatcher.queue_depth() == 0


async def test_a_restart_leaves_a_live_daemons_commands_to_it(setup: Setup) -> None:
    """On a shared store, a daemon starting up replays what it (or a dead daemon) left
    unanswered, not a command another live daemon received and may still be running."""
    core, ingress = setup.core, setup.ingress
    other = "o" * 64
    await core.journal.record(msg("help", event="mine"), Kind.COMMAND, "help")
    await Journal(core.journal.db, other).record(
        msg("status", event="theirs"), Kind.COMMAND, "status"
    )
    assert await ingress.replay(kinds=(Kind.COMMAND,), leave={other}) == 1
    await setup.settle()
    told = " ".join(setup.transport.texts())
    assert "restarted while running `help`" in told and "status" not in told
    assert [p.text for p in await core.journal.pending()] == ["status"]
