"""``musher store copy`` (K1): a populated SQLite install moves to PostgreSQL row for row,
signatures and insertion order intact, verified on arrival; a non-empty target is refused."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from bot.cli import main
from bot.cost import CostBook
from bot.journal import Journal, Kind
from bot.kv import TransportState
from bot.messages import InboundMessage
from bot.store_url import open_db
from pipeline.ops import AddTimer, SetRoom
from pipeline.transitions import Start
from tests.fakes.postgres import Postgres
from tests.unit.pipeline_env import ALICE, PROJECT, pipeline_env

TABLES = (
    "ops", "items", "item_numbers", "timers", "rooms", "projects", "op_checkpoints",
    "inbound", "turns", "room_log", "turn_costs", "transport_state",
)  # fmt: skip


async def populate(data_dir: Path) -> None:
    """An install that ran for a while: items, a timer, room settings, journal, costs."""
    async with pipeline_env(data_dir) as env:
        for title in ("Login page", "Logout", "Sign-up ü%?"):
            await env.story(title)
        await env.engine.apply(PROJECT, 1, Start(), ALICE)
        await env.engine.purge(PROJECT, 2, ALICE)
        await env.store.append(AddTimer("t1", PROJECT, 3, 2.0e9, {"move": "coding"}), ALICE)
        await env.store.append(SetRoom("web:lobby", project=PROJECT, ambient=True), ALICE)
        journal = Journal(env.db)
        ids = []
        for n in range(3):
            msg = InboundMessage("web", "lobby", "alice", f"e{n}", 1.0, f"hi {n}", mentioned=True)
            recorded = await journal.record(msg, Kind.TEXT, f"hi {n}")
            assert recorded is not None
            ids.append(recorded[0])
        turn = await journal.start_turn("web:lobby", ids[:2])
        await journal.finish_turn(turn, ids[:2], "ok")
        await journal.log_bot("web:lobby", "musher", "hello")
        await CostBook(env.db).record(turn, "web:lobby", "echo", 10, 20, 0.125, PROJECT, 1)
        await TransportState(env.db).put("matrix", "since", "s123_456")


async def cli(*args: str) -> int:
    """``musher ARGS…`` as a user runs it (its own event loop, off this one)."""
    return await asyncio.to_thread(main, list(args))


async def dump(url: str, data_dir: Path) -> dict[str, list[tuple[object, ...]]]:
    db = await open_db(url, data_dir)
    try:
        return {
            t: [tuple(r) for r in await db.read(f"SELECT * FROM {t} ORDER BY 1")] for t in TABLES
        }
    finally:
        await db.aclose()


async def copied(postgres: Postgres, tmp_path: Path) -> tuple[str, str]:
    """A populated SQLite install copied to a new PostgreSQL database: (source, target)."""
    await populate(tmp_path)
    source, target = f"sqlite:///{tmp_path / 'musher.db'}", postgres.new_database()
    assert await cli("store", "copy", "--from", source, "--to", target) == 0
    return source, target


async def test_a_sqlite_install_moves_to_postgres_and_verifies(
    postgres: Postgres, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source, target = await copied(postgres, tmp_path)
    out = capsys.readouterr().out
    assert "copied: ops " in out and "inbound 3" in out
    assert "audit verify on the target: ok" in out

    before, after = await dump(source, tmp_path), await dump(target, tmp_path)
    assert all(before[t] for t in TABLES)  # every kind of state was there to copy
    assert after == before
    assert await cli("audit", "verify", "--store", target) == 0
    assert "ok:" in capsys.readouterr().out

    async with pipeline_env(tmp_path / "again", url=target) as env:  # and it runs on
        assert [i.title for i in await env.store.items(PROJECT)] == ["Login page", "Sign-up ü%?"]
        assert (await env.story("After the move")).number == 4  # numbers are never reused
        journal = Journal(env.db)
        pending = await journal.pending()
        assert [p.text for p in pending] == ["hi 2"]
        # new rows get ids past the copied ones (each table's sequence was moved on)
        last = await journal.last_seq("web:lobby")
        msg = InboundMessage("web", "lobby", "alice", "after-copy", 1.0, "again", mentioned=True)
        recorded = await journal.record(msg, Kind.TEXT, "again")
        assert recorded is not None and recorded[0] > max(p.id for p in pending)
        assert (await journal.log_bot("web:lobby", "musher", "still here")).seq > last + 1


async def test_a_target_with_data_is_refused_and_left_alone(
    postgres: Postgres, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source, target = await copied(postgres, tmp_path)
    before = await dump(target, tmp_path)
    capsys.readouterr()

    assert await cli("store", "copy", "--from", source, "--to", target) == 1
    assert "is not empty" in capsys.readouterr().err
    assert await dump(target, tmp_path) == before


async def test_postgres_copies_back_to_a_new_sqlite_file(
    postgres: Postgres, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source, middle = await copied(postgres, tmp_path)
    back = f"sqlite:///{tmp_path / 'back' / 'musher.db'}"
    assert await cli("store", "copy", "--from", middle, "--to", back) == 0
    assert "audit verify on the target: ok" in capsys.readouterr().out
    assert await dump(back, tmp_path) == await dump(source, tmp_path)


def test_a_missing_source_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source = f"sqlite:///{tmp_path / 'nothing.db'}"
    target = f"sqlite:///{tmp_path / 'new.db'}"
    assert main(["store", "copy", "--from", source, "--to", target]) == 1
    assert "no database here" in capsys.readouterr().err
    assert not (tmp_path / "new.db").exists()
