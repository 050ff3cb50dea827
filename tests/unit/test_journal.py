"""The ingress journal on both store backends (K1): dedupe across reopen (I1), turns (D6),
group commit."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from bot.journal import SCHEMA, Journal, Kind, State, migrate
from bot.messages import InboundMessage
from bot.store_url import open_db
from config.errors import StoreError
from pipeline.storage import Conn


def message(event_id: str, text: str = "hi", room: str = "lobby") -> InboundMessage:
    return InboundMessage("web", room, "alice", event_id, 1.0, text, mentioned=True)


async def test_a_redelivered_event_is_recognised_even_after_reopening(
    store_url: str, tmp_path: Path
) -> None:
    db = await open_db(store_url, tmp_path, SCHEMA)
    journal = Journal(db)
    first = await journal.record(message("e1"), Kind.TEXT, "hi")
    assert first is not None
    assert await journal.record(message("e1"), Kind.TEXT, "hi") is None
    await db.aclose()

    db = await open_db(store_url, tmp_path, SCHEMA)
    journal = Journal(db)
    assert await journal.record(message("e1"), Kind.TEXT, "hi") is None
    assert [p.id for p in await journal.pending()] == [first[0]]
    await db.aclose()


async def test_turns_settle_pending_messages(store_url: str, tmp_path: Path) -> None:
    db = await open_db(store_url, tmp_path, SCHEMA)
    journal = Journal(db)
    ids = []
    for n in range(3):
        recorded = await journal.record(message(f"e{n}", f"t{n}"), Kind.TEXT, f"t{n}")
        assert recorded is not None
        ids.append(recorded[0])
    turn = await journal.start_turn("web:lobby", ids[:2])
    pending = await journal.pending()
    assert [(p.id, p.turn_id) for p in pending] == [(ids[0], turn), (ids[1], turn), (ids[2], None)]
    await journal.finish_turn(turn, ids[:2], "ok")
    await journal.mark(ids[2:], State.STOPPED)
    assert await journal.pending() == []
    await db.aclose()


async def test_a_turn_and_its_last_reply_end_together_and_survive_a_restart(
    store_url: str, tmp_path: Path
) -> None:
    """A restarted daemon sees the turn's start; its last reply and its end land in one
    transaction."""
    db = await open_db(store_url, tmp_path, SCHEMA)
    journal = Journal(db)
    recorded = await journal.record(message("e1", "hello"), Kind.TEXT, "hello")
    assert recorded is not None
    turn = await journal.start_turn("web:lobby", [recorded[0]])
    await db.aclose()

    db = await open_db(store_url, tmp_path, SCHEMA)
    journal = Journal(db)
    assert [(p.id, p.turn_id) for p in await journal.pending()] == [(recorded[0], turn)]
    entry = await journal.finish_turn_saying(
        turn, [recorded[0]], "ok", None, ("web:lobby", "bot", "musher", "hi alice")
    )
    assert await journal.pending() == []
    assert [(e.seq, e.role, e.text) for e in await journal.history("web:lobby")][-1] == (
        entry.seq,
        "bot",
        "hi alice",
    )
    await db.aclose()


async def test_room_log_keeps_user_and_bot_lines_in_order(store_url: str, tmp_path: Path) -> None:
    db = await open_db(store_url, tmp_path, SCHEMA)
    journal = Journal(db)
    await journal.record(message("e1", "hello"), Kind.TEXT, "hello")
    await journal.record(message("e2", "not addressed"), Kind.IGNORED, "not addressed")
    await journal.log_bot("web:lobby", "musher", "hi alice")
    await journal.log_bot("web:other", "musher", "elsewhere")
    history = await journal.history("web:lobby")
    assert [(e.role, e.text) for e in history] == [("user", "hello"), ("bot", "hi alice")]
    assert await journal.history("web:lobby", after=history[0].seq) == history[1:]
    assert await journal.last_seq("web:lobby") == history[-1].seq
    await db.aclose()


async def test_concurrent_writes_share_commits_and_all_land(store_url: str, tmp_path: Path) -> None:
    db = await open_db(store_url, tmp_path, SCHEMA)
    journal = Journal(db)
    results = await asyncio.gather(
        *(journal.record(message(f"e{n}"), Kind.TEXT, "x") for n in range(200))
    )
    assert all(r is not None for r in results)
    assert len({r[0] for r in results if r is not None}) == 200
    await db.aclose()
    db = await open_db(store_url, tmp_path)
    assert [tuple(r) for r in await db.read("SELECT COUNT(*) FROM inbound")] == [(200,)]
    await db.aclose()
    if store_url.startswith("sqlite"):
        with sqlite3.connect(tmp_path / "musher.db") as conn:
            assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)


async def test_a_failing_write_is_reported_and_spares_the_others(
    store_url: str, tmp_path: Path
) -> None:
    db = await open_db(store_url, tmp_path, SCHEMA)
    journal = Journal(db)

    def bad(conn: Conn) -> None:
        conn.execute("INSERT INTO no_such_table VALUES (1)")

    good = [journal.record(message(f"e{n}"), Kind.TEXT, "x") for n in range(5)]
    outcome = await asyncio.gather(db.write(bad), *good, return_exceptions=True)
    assert isinstance(outcome[0], StoreError)
    assert all(isinstance(r, tuple) for r in outcome[1:])
    await db.aclose()
    with pytest.raises(StoreError):
        await db.write(bad)


async def test_one_refusal_per_sender_per_day(store_url: str, tmp_path: Path) -> None:
    db = await open_db(store_url, tmp_path, SCHEMA)
    journal = Journal(db)
    assert await journal.first_refusal_today("web", "mallory")
    assert not await journal.first_refusal_today("web", "mallory")
    assert await journal.first_refusal_today("web", "eve")
    await db.aclose()


async def test_a_journal_without_receivers_gets_the_column_and_keeps_its_rows(
    store_url: str, tmp_path: Path
) -> None:
    """An older journal (no ``inbound.node``) on either backend: the column is added, its rows
    kept (receiver unknown), new rows name the daemon that received them."""
    old = await open_db(store_url, tmp_path, SCHEMA.replace("    node        TEXT,\n", ""))
    await old.write(
        lambda conn: conn.execute(
            "INSERT INTO inbound (transport, event_id, room, sender, text, ts, received_at, kind,"
            " state) VALUES ('web', 'e1', 'lobby', 'alice', 'status', 1, 1, 'command', 'pending')"
        )
    )
    await old.aclose()
    db = await open_db(store_url, tmp_path, SCHEMA)
    await migrate(db)
    await migrate(db)  # idempotent
    await Journal(db, "k" * 64).record(message("e2"), Kind.COMMAND, "agents")
    pending = await Journal(db).pending()
    assert [(p.text, p.node) for p in pending] == [("status", None), ("agents", "k" * 64)]
    await db.aclose()
