"""Every other table the daemon keeps, through its own class, on both store backends (K1):
costs, transport state, LLM history, claude sessions, approvals, the journal's upkeep."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.approvals import ApprovalLog
from bot.cost import CostBook
from bot.db import Db
from bot.journal import Journal, Kind, State
from bot.kv import TransportState
from bot.llm.claude_sessions import ClaudeSessions
from bot.llm.history import History
from bot.messages import InboundMessage
from bot.schema import DAEMON_SCHEMA
from bot.store_url import open_db


@pytest.fixture
async def db(store_url: str, tmp_path: Path) -> AsyncIterator[Db]:
    database = await open_db(store_url, tmp_path, DAEMON_SCHEMA)
    yield database
    await database.aclose()


async def test_costs_are_recorded_once_per_turn_and_reported(db: Db) -> None:
    book = CostBook(db)
    await book.record(1, "web:a", "echo", 100, 200, 0.5, "demo", 3)
    await book.record(1, "web:a", "echo", 100, 200, 0.75, "demo", 3)  # the same turn again
    await book.record(2, "web:b", "echo", 10, 20, 0.25)
    report = await book.report()
    assert report.startswith("Last 24 h: $1.0000 over 2 turns (110 tokens in, 220 out).")
    assert "web:a: $0.7500 (1 turns)" in report and "demo #3: $0.7500" in report
    chart = await book.chart(days=3)
    assert [day["turns"] for day in chart["days"]] == [0, 0, 2]  # type: ignore[index]
    assert chart["last_24h"] == {"usd": 1.0, "turns": 2}
    assert chart["top_items"] == [{"project": "demo", "item": 3, "usd": 0.75}]
    assert await book.item_cost("demo", 3) == {"usd": 0.75, "turns": 1}


async def test_transport_state_keeps_and_forgets_values(db: Db) -> None:
    state = TransportState(db)
    await state.put("matrix", "since", "s1")
    await state.put("matrix", "since", "s2")
    now = time.time()
    await state.put("slack", "seen:%old", str(now - 100))
    await state.put("slack", "seen:new", str(now))
    await state.forget("slack", "seen:", now - 50)
    assert await state.get("matrix", "since") == "s2"
    assert await state.get("slack", "seen:%old") is None
    assert await state.get("slack", "seen:new") == str(now)


async def test_a_transport_state_key_is_claimed_once(db: Db) -> None:
    state = TransportState(db)
    won = await asyncio.gather(*(state.claim("whatsapp", "sent:k", str(n)) for n in range(5)))
    assert sorted(won) == [False, False, False, False, True]
    assert await state.get("whatsapp", "sent:k") == str(won.index(True))
    assert not await state.claim("whatsapp", "sent:k", "later")
    assert await state.claim("whatsapp", "sent:other", "1")


async def test_history_keeps_whole_turns(db: Db) -> None:
    history = History(db)
    for n in range(3):
        turn = [{"role": "user", "content": f"q{n}"}, {"role": "assistant", "content": f"a{n}"}]
        await history.append_turn("web:a", "openai", turn, keep_turns=2)
    assert [m["content"] for m in await history.load("web:a", "openai")] == ["q1", "a1", "q2", "a2"]
    await history.reset("web:a")
    assert await history.load("web:a", "openai") == []


async def test_claude_sessions_and_approvals(db: Db) -> None:
    sessions = ClaudeSessions(db)
    await sessions.set("web:a", "s-1")
    await sessions.set("web:a", "s-2")
    assert await sessions.get("web:a") == "s-2"
    await sessions.clear("web:a")
    assert await sessions.get("web:a") is None
    log = ApprovalLog(db)
    for n in range(3):
        await log.record("web:a", f"Bash(ls {n})", "approved", "alice", "")
    assert [d.use for d in await log.recent("web:a", limit=2)] == ["Bash(ls 1)", "Bash(ls 2)"]


async def test_the_journal_prunes_only_finished_rows(db: Db) -> None:
    journal = Journal(db)
    ids = []
    for n, kind in enumerate((Kind.TEXT, Kind.COMMAND, Kind.IGNORED)):
        message = InboundMessage("web", "lobby", "al", f"e{n}", 1.0, "hi", mentioned=True)
        recorded = await journal.record(message, kind, "hi")
        assert recorded is not None
        ids.append(recorded[0])
    await journal.mark(ids[1:2], State.DONE)
    assert await journal.command_rooms() == ["web:lobby"]
    assert await journal.prune(days=-1) == 2  # the pending one stays
    assert [p.id for p in await journal.pending()] == ids[:1]
    assert await journal.first_refusal_today("web", "eve")
    assert not await journal.first_refusal_today("web", "eve")
