"""Busy mode steer through the daemon's core (D3): ingress, dispatcher, turn runner, journal.

The provider holds its first turn open at a "tool boundary" until the test has said more in
the room, then takes what waits, as the chat and claude-cli providers do.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from bot.access import AccessPolicies, AccessPolicy
from bot.daemon import Core, build_core
from bot.db import Database
from bot.llm.base import Done, TextDelta, TurnEvent, TurnRequest
from bot.messages import InboundMessage, Session
from bot.schema import DAEMON_SCHEMA
from config import load_settings
from pipeline.keys import load_or_create
from pipeline.store import OpStore
from tests.fakes.memory_transport import MemoryTransport

SESSION = Session("chat:!room")


class BoundaryProvider:
    """Each turn: wait at a tool boundary until ``go`` is set (first turn only), take what
    the room said meanwhile, answer ``answered: <everything read>``."""

    name = "boundary"

    def __init__(self) -> None:
        self.prompts: list[str] = []
        self.took: list[str | None] = []
        self.at_boundary = asyncio.Event()
        self.go = asyncio.Event()

    async def run(
        self, request: TurnRequest, cancel: asyncio.Event
    ) -> AsyncGenerator[TurnEvent, None]:
        self.prompts.append(request.prompt)
        read = [request.prompt]
        if request.steer is not None and len(self.prompts) == 1:
            self.at_boundary.set()
            await self.go.wait()
            taken = await request.steer.take()
            self.took.append(taken)
            read += [taken] if taken else []
        yield TextDelta("answered: " + " / ".join(read))
        yield Done()

    async def reset(self, session: str) -> None:
        return None

    async def aclose(self) -> None:
        return None


@dataclass
class Room:
    core: Core
    provider: BoundaryProvider
    transport: MemoryTransport
    db: Database

    async def say(self, text: str, sender: str = "alice") -> None:
        msg = InboundMessage("chat", "!room", sender, text, 0.0, text, mentioned=True)
        await self.core.ingress({}).feed(msg)

    async def settle(self) -> None:
        await self.core.lanes.join()
        await self.core.dispatcher.join()

    async def unanswered(self) -> list[str]:
        return [p.text for p in await self.core.journal.pending()]

    async def turn_ids(self) -> set[int]:
        rows = await self.db.read("SELECT DISTINCT turn_id FROM inbound WHERE kind = 'text'")
        return {r["turn_id"] for r in rows}


@pytest.fixture
async def room(tmp_path: Path) -> AsyncIterator[Room]:
    env = {
        "MUSHER_DISPATCHER__COALESCE_WINDOW_MS": "0",
        "MUSHER_DISPATCHER__BUSY_MODE": "steer",
        "MUSHER_TRANSPORTS__WEB__ENABLED": "false",
    }
    settings = load_settings(None, env)
    db = await Database.open(tmp_path / "m.db", DAEMON_SCHEMA)
    provider = BoundaryProvider()
    store = await OpStore.open(db, load_or_create(tmp_path))
    access = AccessPolicies({"chat": AccessPolicy.build(["alice", "bob"], ["alice"])})
    core = build_core(settings, db, store, provider=provider, access=access)
    transport = MemoryTransport()
    core.outbox.attach(transport)
    await transport.start(core.ingress({}))
    yield Room(core, provider, transport, db)
    await transport.aclose()
    await core.lanes.aclose(0)
    await core.dispatcher.aclose()
    await db.aclose()


async def started(room: Room, text: str, sender: str = "alice") -> None:
    await room.say(text, sender)
    await room.core.lanes.join()
    await asyncio.wait_for(room.provider.at_boundary.wait(), 5)


async def test_messages_during_a_turn_are_answered_by_that_turn(room: Room) -> None:
    await started(room, "look at #3")
    await room.say("and #4")
    await room.say("and #5")
    room.provider.go.set()
    await room.settle()
    assert room.provider.took == ["alice: and #4\n\nalice: and #5"]
    answer = "answered: alice: look at #3 / alice: and #4\n\nalice: and #5"
    assert room.transport.texts() == answer.split("\n\n")  # one paragraph each
    assert len(room.provider.prompts) == 1  # no follow-up turn
    assert await room.unanswered() == []
    assert len(await room.turn_ids()) == 1  # the journal has them all in the one turn


async def test_a_non_admin_never_joins_an_admin_turn_and_is_answered_after(room: Room) -> None:
    await started(room, "please purge #3")  # alice is an admin: the turn may purge
    await room.say("me too", sender="bob")
    room.provider.go.set()
    await room.settle()
    assert room.provider.took == [None]
    assert room.provider.prompts == ["alice: please purge #3", "bob: me too"]
    assert await room.unanswered() == []


async def test_stop_drops_what_the_turn_took_with_it(room: Room) -> None:
    await started(room, "long job")
    await room.say("and more")
    await room.say("stop")
    await room.settle()
    assert room.transport.texts() == ["Stopped."]
    assert await room.unanswered() == []  # stopped, never answered later
    assert room.core.dispatcher.session_count() <= 1 and room.core.dispatcher.queue_depth() == 0


async def test_the_bots_own_typing_is_ignored(room: Room) -> None:
    ingress = room.core.ingress({"chat": ("musher-bot",)})
    ingress.typing(SESSION, "musher-bot", 5.0)
    assert room.core.dispatcher.session_count() == 0
    ingress.typing(SESSION, "alice", 5.0)
    assert room.core.dispatcher.session_count() == 1
