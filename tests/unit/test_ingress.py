"""Ingress on a real journal: own messages, mentions, ambient, strangers, admins (I2–I4, C1)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator
from pathlib import Path

import pytest

from bot.access import AccessPolicy
from bot.daemon import build_services
from bot.db import Database
from bot.ingress import Ingress
from bot.llm.base import Done, TextDelta, TurnEvent, TurnRequest
from bot.messages import InboundMessage, Reply
from bot.schema import DAEMON_SCHEMA
from bot.services import Services
from bot.transport import Capabilities, FeedResult
from config import load_settings
from pipeline.keys import load_or_create
from pipeline.store import OpStore


class Recorder:
    """A provider that records each turn's batch and answers at once."""

    name = "recorder"

    def __init__(self) -> None:
        self.turns: list[list[str]] = []

    async def run(
        self, request: TurnRequest, cancel: asyncio.Event
    ) -> AsyncGenerator[TurnEvent, None]:
        self.turns.append([f"{m.sender}: {m.text}" for m in request.batch])
        yield TextDelta("ok")
        yield Done()

    async def reset(self, session: str) -> None:
        return None

    async def aclose(self) -> None:
        return None


class RoomTransport:
    """A transport that keeps what the bot sent, per session."""

    name = "chat"
    capabilities = Capabilities(max_length=50)
    identities = ("@bot:example.org",)

    def __init__(self) -> None:
        self.sent: list[tuple[str, str]] = []

    async def send(self, session: str, reply: Reply) -> str | None:
        self.sent.append((session, reply.text))
        return None

    async def typing(self, session: str, active: bool) -> None:
        return None


Setup = tuple[Services, Ingress, Recorder, RoomTransport]


@pytest.fixture
async def setup(tmp_path: Path) -> AsyncIterator[Setup]:
    settings = load_settings(None, {"MUSHER_DISPATCHER__COALESCE_WINDOW_MS": "0"})
    db = await Database.open(tmp_path / "m.db", DAEMON_SCHEMA)
    provider = Recorder()
    store = await OpStore.open(db, load_or_create(tmp_path))
    services = build_services(settings, db, store, provider=provider)
    transport = RoomTransport()
    services.outbox.transports["chat"] = transport  # type: ignore[assignment]
    services.access["chat"] = AccessPolicy.build(["alice", "bob"], ["alice"])
    ingress = Ingress(services, {"chat": transport.identities})
    yield services, ingress, provider, transport
    await services.dispatcher.aclose()
    await db.aclose()


def msg(
    text: str, sender: str = "bob", event: str | None = None, mentioned: bool = False
) -> InboundMessage:
    return InboundMessage("chat", "!room", sender, event or text, 0.0, text, mentioned=mentioned)


async def settle(services: Services) -> None:
    for _ in range(100):
        await asyncio.sleep(0.01)
        if services.dispatcher.queue_depth() == 0 and not services.dispatcher.busy("chat:!room"):
            return


async def test_unaddressed_messages_in_a_shared_room_cost_nothing(setup: Setup) -> None:
    services, ingress, provider, transport = setup
    assert await ingress.feed(msg("just chatting")) is FeedResult.IGNORED
    await settle(services)
    assert provider.turns == [] and transport.sent == []


async def test_a_mention_is_stripped_and_the_text_reaches_the_llm(setup: Setup) -> None:
    services, ingress, provider, transport = setup
    assert await ingress.feed(msg("@bot:example.org: what is up?")) is FeedResult.ACCEPTED
    await settle(services)
    assert provider.turns == [["bob: what is up?"]]
    assert transport.sent == [("chat:!room", "ok")]


async def test_ambient_on_makes_every_message_addressed(setup: Setup) -> None:
    services, ingress, provider, _ = setup
    await ingress.feed(msg("musher: ambient on", event="a"))
    await ingress.feed(msg("no mention needed", event="b"))
    await settle(services)
    assert provider.turns == [["bob: no mention needed"]]
    await ingress.feed(msg("ambient off", event="c"))
    await ingress.feed(msg("ignored again", event="d"))
    await settle(services)
    assert len(provider.turns) == 1
    room = await services.store.room("chat:!room")  # kept in the signed op log
    assert room is not None and room.ambient is False


async def test_the_bots_own_messages_are_never_processed(setup: Setup) -> None:
    services, ingress, provider, _ = setup
    result = await ingress.feed(msg("help", sender="@bot:example.org", mentioned=True))
    assert result is FeedResult.IGNORED
    await settle(services)
    assert provider.turns == []


async def test_strangers_get_nothing_or_one_refusal_a_day(setup: Setup) -> None:
    services, ingress, provider, transport = setup
    assert await ingress.feed(msg("hi", sender="mallory", mentioned=True)) is FeedResult.REFUSED
    assert transport.sent == []
    services.settings.access.reply_to_strangers = True
    await ingress.feed(msg("hi again", sender="mallory", mentioned=True))
    await ingress.feed(msg("and again", sender="mallory", mentioned=True))
    await settle(services)
    refusal = " ".join(text for _, text in transport.sent)  # split at the 50-char limit
    assert refusal == "Sorry, I only answer people I was set up for. Ask an admin to add you."
    assert provider.turns == []


async def test_commands_never_reach_the_llm_and_replies_are_split(setup: Setup) -> None:
    services, ingress, provider, transport = setup
    await ingress.feed(msg("help", mentioned=True))
    await ingress.feed(msg("stop now please", mentioned=True))
    await settle(services)
    assert provider.turns == []
    texts = [text for _, text in transport.sent]
    assert all(len(t) <= 50 for t in texts)
    assert texts[0] == "Commands:" and texts[-1] == "Usage: stop"


async def test_duplicates_are_acknowledged_and_dropped(setup: Setup) -> None:
    services, ingress, provider, _ = setup
    assert await ingress.feed(msg("hello", event="e1", mentioned=True)) is FeedResult.ACCEPTED
    assert await ingress.feed(msg("hello", event="e1", mentioned=True)) is FeedResult.DUPLICATE
    await settle(services)
    assert provider.turns == [["bob: hello"]]
