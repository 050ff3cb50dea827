"""The outbox (L3): replies split to the transport's limit, keyed per chunk, logged per room."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from bot.db import Database
from bot.feed import RoomFeed
from bot.journal import Journal
from bot.messages import Reply, Session
from bot.metrics import Metrics
from bot.outbox import Outbox
from bot.schema import DAEMON_SCHEMA
from bot.transport import Capabilities
from tests.fakes.memory_transport import MemoryTransport

ROOM = Session.make("chat", "C1", "17.5")  # a thread: its own session


@dataclass
class Setup:
    outbox: Outbox
    chat: MemoryTransport
    journal: Journal
    metrics: Metrics


@pytest.fixture
async def setup(tmp_path: Path) -> AsyncIterator[Setup]:
    db = await Database.open(tmp_path / "m.db", DAEMON_SCHEMA)
    journal, metrics = Journal(db), Metrics()
    outbox = Outbox(journal, RoomFeed(), metrics, "musher")
    chat = MemoryTransport(capabilities=Capabilities(max_length=20, typing=True))
    outbox.attach(chat)
    yield Setup(outbox, chat, journal, metrics)
    await db.aclose()


async def test_a_reply_is_split_keyed_per_chunk_and_logged(setup: Setup) -> None:
    text = "first paragraph\n\nsecond paragraph"
    await setup.outbox.send(ROOM, Reply(text, key="c7", reply_to="handle"))
    sent = setup.chat.sent
    assert [s.text for s in sent] == ["first paragraph", "second paragraph"]
    assert [s.reply.key for s in sent] == ["c7.0", "c7.1"]
    assert {s.reply.reply_to for s in sent} == {"handle"}
    assert {(s.session.transport, s.session.room, s.session.thread) for s in sent} == {
        ("chat", "C1", "17.5")
    }
    logged = [e.text for e in await setup.journal.history(ROOM)]
    assert logged == ["first paragraph", "second paragraph"]


async def test_a_failed_send_is_counted_and_still_logged(setup: Setup) -> None:
    setup.chat.fail_with = ConnectionError("platform down")
    await setup.outbox.send(ROOM, Reply("hello"))  # never raised to the caller
    assert setup.metrics.sends_failed.values == {"chat": 1}
    assert [e.text for e in await setup.journal.history(ROOM)] == ["hello"]


async def test_typing_reaches_a_transport_that_shows_it(setup: Setup) -> None:
    await setup.outbox.typing(ROOM, True)
    await setup.outbox.typing(ROOM, False)
    assert setup.chat.typing_changes == [(ROOM, True), (ROOM, False)]


async def test_a_session_without_its_transport_is_only_logged(setup: Setup) -> None:
    other = Session.make("gone", "R")
    await setup.outbox.send(other, Reply("into the log"))
    assert setup.chat.sent == []
    assert [e.text for e in await setup.journal.history(other)] == ["into the log"]
