"""The store failing and recovering, on real SQLite (R18, D6, I1): health and readiness, the
turn retry, the journal's migration to per-room client ids, one interruption notice."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Sequence
from pathlib import Path

import pytest

from bot.db import Database
from bot.journal import SCHEMA, Journal, Kind, migrate
from bot.messages import InboundMessage, QueuedText, Reply
from bot.store_health import StoreHealth
from bot.turn_retry import GAVE_UP, RETRYING, TurnRetry
from config.errors import StoreError, StoreUnavailable

OLD_INBOUND = SCHEMA.replace(  # the first musher's: unique per transport, no `node` column
    "UNIQUE (transport, room, event_id)", "UNIQUE (transport, event_id)"
).replace("    node        TEXT,\n", "")


def message(event_id: str, room: str = "lobby") -> InboundMessage:
    return InboundMessage("web", room, "alice", event_id, 1.0, "hi", mentioned=True)


async def set_query_only(db: Database, on: bool) -> None:
    """Flip the writer connection's ``query_only``, on the writer's own thread."""
    loop = asyncio.get_running_loop()
    statement = f"PRAGMA query_only = {int(on)}"
    await loop.run_in_executor(db._executor, db._writer.execute, statement)


async def test_a_read_only_database_fails_writes_says_why_and_recovers(tmp_path: Path) -> None:
    db = await Database.open(tmp_path / "m.db", SCHEMA)
    journal = Journal(db)
    assert db.health.components() == {}
    await set_query_only(db, True)  # the writer now sees a read-only database

    with pytest.raises(StoreUnavailable):
        await journal.record(message("e1"), Kind.TEXT, "hi")
    state = db.health.components()["store"]
    assert state == "failing: the database cannot be written: attempt to write a readonly database"
    with pytest.raises(StoreUnavailable):  # refused at once while failing: never acked
        await journal.record(message("e2"), Kind.TEXT, "hi")
    with pytest.raises(StoreUnavailable):
        await db.probe()

    await set_query_only(db, False)  # the file is writable again
    await db.health.recovered(db.probe, first_delay=0.01)
    assert db.health.components() == {}
    assert await journal.record(message("e2"), Kind.TEXT, "hi") is not None
    await db.aclose()


async def test_a_jobs_own_error_says_nothing_about_the_store(tmp_path: Path) -> None:
    db = await Database.open(tmp_path / "m.db", SCHEMA)

    def bad(conn: sqlite3.Connection) -> None:
        conn.execute("INSERT INTO turns (id, session, started_at) VALUES (1, 'x', 0)")
        conn.execute("INSERT INTO turns (id, session, started_at) VALUES (1, 'x', 0)")

    with pytest.raises(StoreError) as err:
        await db.write(bad)
    assert not isinstance(err.value, StoreUnavailable)
    assert db.health.components() == {}
    await db.aclose()


class FlakyTurn:
    """A turn runner whose first ``failures`` calls fail to store, with a failing store."""

    def __init__(self, health: StoreHealth, failures: int) -> None:
        self.health, self.failures, self.calls = health, failures, 0

    async def __call__(self, session: str, batch: Sequence[QueuedText]) -> None:
        self.calls += 1
        if self.calls <= self.failures:
            self.health.failed("database or disk is full")
            raise StoreUnavailable("the database cannot be written: database or disk is full")


async def probe_fine(health: StoreHealth) -> None:
    health.succeeded()


@pytest.mark.parametrize(("failures", "calls", "told"), [(1, 2, [RETRYING]), (5, 3, [RETRYING,
                         RETRYING, GAVE_UP])])  # fmt: skip
async def test_a_turn_that_could_not_be_stored_runs_again_or_the_room_hears_it_failed(
    failures: int, calls: int, told: list[str]
) -> None:
    health = StoreHealth()
    turn = FlakyTurn(health, failures)
    said: list[tuple[str, Reply]] = []

    async def tell(session: str, reply: Reply) -> None:
        said.append((session, reply))

    async def probe() -> None:
        await probe_fine(health)

    retry = TurnRetry(turn, health, probe, tell, attempts=3, first_delay=0.001)
    await retry("web:lobby", [QueuedText("alice", "hi", 1)])

    assert turn.calls == calls
    reason = "the database cannot be written: database or disk is full"
    expected = [t.format(reason=reason, attempts=3) for t in told]
    assert [(s, r.text) for s, r in said] == [("web:lobby", t) for t in expected]
    assert health.components() == {}


async def test_an_old_journal_is_migrated_to_per_room_client_ids(tmp_path: Path) -> None:
    with sqlite3.connect(tmp_path / "m.db") as conn:
        conn.executescript(OLD_INBOUND)
        conn.execute(
            "INSERT INTO inbound (transport, event_id, room, sender, text, ts, received_at, kind,"
            " state) VALUES ('web', 'x1', 'a', 'alice', 'old', 1, 1, 'text', 'pending')"
        )
    db = await Database.open(tmp_path / "m.db", SCHEMA)
    journal = Journal(db)
    await migrate(db)
    await migrate(db)  # idempotent

    assert await journal.record(message("x1", room="a"), Kind.TEXT, "hi") is None
    assert await journal.record(message("x1", room="b"), Kind.TEXT, "hi") is not None
    assert [p.text for p in await journal.pending()] == ["old", "hi"]
    assert [p.node for p in await journal.pending()] == [None, None]  # Journal(db): no node
    await db.aclose()


async def test_an_interrupted_turn_is_reported_once(tmp_path: Path) -> None:
    db = await Database.open(tmp_path / "m.db", SCHEMA)
    journal = Journal(db)
    recorded = await journal.record(message("e1"), Kind.TEXT, "hi")
    assert recorded is not None
    turn = await journal.start_turn("web:lobby", [recorded[0]])
    assert [p.turn_id for p in await journal.pending()] == [turn]

    await journal.close_interrupted([turn])

    assert [(p.id, p.turn_id) for p in await journal.pending()] == [(recorded[0], None)]
    await db.aclose()
