"""What only the PostgreSQL backend has to show (K1): the SQL it translates, ids handed out
in commit order across connections, lost connections, and a server that is not there."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable
from pathlib import Path

import psycopg
import pytest

from bot import pg_sql
from bot.db import Db
from bot.journal import SCHEMA, Journal, Kind
from bot.messages import InboundMessage
from bot.pgdb import PgDatabase
from bot.store_url import open_db
from config.errors import ConfigError, StoreUnavailable
from pipeline.audit import verify
from pipeline.keys import NodeKey
from pipeline.leases import SCHEMA as LEASES
from pipeline.model import SystemOrigin
from pipeline.ops import SetRoom
from pipeline.storage import Conn, hold_appends, serialise
from pipeline.store import OpStore
from tests.fakes.postgres import Postgres

ORIGIN = SystemOrigin("test", "pg")


def message(event_id: str) -> InboundMessage:
    return InboundMessage("web", "lobby", "alice", event_id, 1.0, "hi", mentioned=True)


# --- the translation ---------------------------------------------------------------------


def test_placeholders_are_translated_and_quoted_text_is_left_alone() -> None:
    plain = pg_sql.statement("SELECT '?', x FROM t WHERE a = ? AND b LIKE '%' || ?")
    assert plain.text == "SELECT '?', x FROM t WHERE a = %s AND b LIKE '%%' || %s"
    assert plain.params(("A", "B")) == ("A", "B")
    numbered = pg_sql.statement("SELECT ?2, ?1, ?2")
    assert numbered.text == "SELECT %s, %s, %s"
    assert numbered.params(("one", "two")) == ["two", "one", "two"]


def test_tables_get_postgres_types_and_ids_in_commit_order() -> None:
    statements = pg_sql.ddl(
        "CREATE TABLE IF NOT EXISTS log (seq INTEGER PRIMARY KEY AUTOINCREMENT,"
        " text TEXT NOT NULL, ts REAL, sig BLOB)"
    )
    assert statements[0] == (
        'CREATE TABLE IF NOT EXISTS log (seq BIGINT PRIMARY KEY, text TEXT COLLATE "C" NOT NULL,'
        " ts DOUBLE PRECISION, sig BYTEA)"
    )
    # a plain table takes ids from a sequence of its own (never waits); the op log's come
    # from its locked counter row, in commit order
    assert any("nextval('musher_log_seq_seq')" in s for s in statements[1:])
    assert not any("musher_sequence SET" in s for s in statements[1:])
    ops = pg_sql.ddl("CREATE TABLE IF NOT EXISTS ops (rowid INTEGER PRIMARY KEY, a TEXT)")
    assert any("musher_sequence" in s and "NEW.rowid" in s for s in ops[1:])
    guard = pg_sql.ddl(
        "CREATE TRIGGER IF NOT EXISTS no_update BEFORE UPDATE ON log\n"
        "  BEGIN SELECT RAISE(ABORT, 'append-only'); END"
    )
    assert "RAISE EXCEPTION 'append-only'" in guard[0] and "BEFORE UPDATE ON log" in guard[1]


# --- against the real server -------------------------------------------------------------


async def test_two_daemons_appending_at_once_get_gapless_ids_in_commit_order(
    postgres: Postgres, tmp_path: Path
) -> None:
    url = postgres.new_schema()
    first, second = await open_db(url, tmp_path), await open_db(url, tmp_path)
    try:
        a = await OpStore.open(first, NodeKey.generate())
        b = await OpStore.open(second, NodeKey.generate())

        async def churn(store: OpStore, name: str) -> None:
            for n in range(60):
                await store.append(SetRoom(f"web:{name}{n % 5}", ambient=n % 2 == 0), ORIGIN)

        await asyncio.gather(churn(a, "a"), churn(b, "b"), churn(a, "c"), churn(b, "d"))
        rows = await first.read("SELECT rowid, author, seq FROM ops ORDER BY rowid")
        assert [r[0] for r in rows] == list(range(1, 241))
        for author in (a.author, b.author):
            seqs = [r[2] for r in rows if r[1] == author]
            assert seqs == sorted(seqs) and len(seqs) == 120
        report = await verify(second)
        assert report.ok, str(report)
    finally:
        await first.aclose()
        await second.aclose()


async def test_two_daemons_writing_the_same_rooms_in_opposite_orders_lose_no_write(
    postgres: Postgres, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Two daemons' group commits journal messages and log lines for the same rooms, taking
    rooms, journal and leases in opposite orders (on one id counter per table that
    deadlocked, a second each, and writes failed). Every write lands once, nothing is
    logged as failed, and the server detected no deadlock."""
    server_log = postgres.directory / "server.log"
    deadlocks = server_log.read_text(errors="replace").count("deadlock detected")
    url = postgres.new_schema()
    first = await open_db(url, tmp_path, SCHEMA + LEASES)
    second = await open_db(url, tmp_path, SCHEMA + LEASES)
    rooms = [f"r{n}" for n in range(4)]

    def job(db: str, n: int, rooms: list[str]) -> Callable[[Conn], None]:
        def journal(conn: Conn, room: str) -> None:
            conn.execute(
                "INSERT INTO inbound (transport, event_id, room, sender, text, ts,"
                " received_at, kind, state) VALUES ('web', ?, ?, 'u', 't', 0, 0, ?, 'pending')",
                (f"{db}-{n}", room, "command" if n % 3 == 0 else "text"),
            )

        def log(conn: Conn, room: str) -> None:
            conn.execute(
                "INSERT INTO room_log (session, role, sender, text, ts)"
                " VALUES (?, 'user', 'u', ?, 0)",
                (f"web:{room}", f"{db}-{n}"),
            )

        steps = (journal, log) if db.startswith("a") else (log, journal)

        def write(conn: Conn) -> None:
            for room in rooms:
                serialise(conn, f"lease:room:web:{room}")
                for step in steps:
                    step(conn, room)

        return write

    async def churn(db: Db, name: str, order: list[str]) -> None:
        await asyncio.gather(*(db.write(job(name, n, order)) for n in range(40)))

    try:
        with caplog.at_level(logging.WARNING, logger="musher.db"):
            for rep in range(3):
                await asyncio.gather(
                    churn(first, f"a{rep}", rooms), churn(second, f"b{rep}", rooms[::-1])
                )
        assert not caplog.records
        assert server_log.read_text(errors="replace").count("deadlock detected") == deadlocks
        lines = await first.read("SELECT session, text FROM room_log")
        assert len(lines) == len(set(lines)) == 3 * 2 * 40 * len(rooms)
        assert len(await second.read("SELECT id FROM inbound")) == 3 * 2 * 40 * len(rooms)
    finally:
        await first.aclose()
        await second.aclose()


async def test_a_database_from_before_the_sequences_goes_on_past_its_ids(
    postgres: Postgres, tmp_path: Path
) -> None:
    """A database written when every table's ids came from ``musher_sequence``: its tables
    get sequences that start past every id handed out (a deleted tail included)."""
    url = postgres.new_schema()
    db = await open_db(url, tmp_path, SCHEMA)
    journal = Journal(db)
    assert await journal.record(message("e1"), Kind.TEXT, "hi") is not None
    await db.aclose()
    with psycopg.connect(url, autocommit=True) as conn:  # as the older musher left it
        conn.execute("DROP SEQUENCE musher_inbound_id_seq")
        conn.execute("UPDATE inbound SET id = 40")
        conn.execute(pg_sql.SEQUENCE_TABLE)
        conn.execute("INSERT INTO musher_sequence VALUES ('inbound', 41)")
    db = await open_db(url, tmp_path, SCHEMA)
    try:
        recorded = await Journal(db).record(message("e2"), Kind.TEXT, "hi")
        assert recorded is not None and recorded[0] == 42
    finally:
        await db.aclose()


async def test_a_killed_connection_is_replaced_and_nothing_is_lost(
    postgres: Postgres, tmp_path: Path
) -> None:
    db = await open_db(postgres.new_schema(), tmp_path, SCHEMA)
    try:
        journal = Journal(db)
        assert await journal.record(message("e1"), Kind.TEXT, "hi") is not None
        postgres.terminate_others()  # as pg_terminate_backend or a restarted server does
        assert await journal.record(message("e2"), Kind.TEXT, "hi") is not None
        assert db.health.components() == {}
        postgres.terminate_others()
        assert [p.text for p in await journal.pending()] == ["hi", "hi"]
    finally:
        await db.aclose()


async def test_an_unreachable_server_is_a_clear_error_without_the_password(
    tmp_path: Path,
) -> None:
    url = "postgresql://musher:hunter2@127.0.0.1:1/musher?connect_timeout=2"
    with pytest.raises(StoreUnavailable) as caught:
        await PgDatabase.open(url, tmp_path)
    assert "musher:***@127.0.0.1:1" in str(caught.value)
    assert "hunter2" not in str(caught.value)


async def test_a_url_of_no_known_backend_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not sqlite:/// nor postgresql://"):
        await open_db("mysql://x@y/z", tmp_path)


async def test_a_held_log_takes_no_append_from_another_node_until_the_holder_commits(
    postgres: Postgres, tmp_path: Path
) -> None:
    """What makes ``audit verify`` one snapshot on a store other daemons write to."""
    url = postgres.new_schema()
    first, second = await open_db(url, tmp_path), await open_db(url, tmp_path)
    try:
        other = await OpStore.open(second, NodeKey.generate())
        release = threading.Event()

        def holding(conn: Conn) -> None:
            hold_appends(conn, "ops")
            release.wait(10)

        held = asyncio.create_task(first.write(holding))
        await asyncio.sleep(0.3)
        append = asyncio.create_task(other.append(SetRoom("web:x", ambient=True), ORIGIN))
        await asyncio.sleep(0.5)
        assert not append.done()  # waiting on the held counter row
        release.set()
        await held
        assert (await append).rowid == 1
    finally:
        await first.aclose()
        await second.aclose()
