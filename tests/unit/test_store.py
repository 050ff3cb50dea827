"""The op log store: materialised tables, numbering, purge, seq resume, replay order, keys."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import stat
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.db import Database, Db
from bot.store_url import open_db
from config.errors import StoreError
from pipeline import audit
from pipeline.canonical import canonical_json, parse_canonical
from pipeline.envelope import OP_COLUMNS, SignedOp, op_from_row
from pipeline.errors import PipelineError
from pipeline.keys import KeyFileError, NodeKey, load_or_create
from pipeline.materialise import apply, create_tables
from pipeline.model import (
    Abandoned,
    Backlog,
    Coding,
    Done,
    Item,
    ItemKind,
    Qa,
    SystemOrigin,
    UserOrigin,
)
from pipeline.ops import (
    AddTimer,
    CancelTimer,
    CreateItem,
    CreateProject,
    PurgeItem,
    SetRoom,
    UpdateItem,
)
from pipeline.storage import Storage
from pipeline.store import OpStore

ALICE = UserOrigin("web", "alice", "lobby")
DEMO = CreateProject("demo", "/srv/demo", "main", "Europe/London")


class Clock:
    """A settable clock: every op gets a distinct, predictable time."""

    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        self.now += 1.0
        return self.now


@pytest.fixture
async def db(store_url: str, tmp_path: Path) -> AsyncIterator[Db]:
    """A new store on each backend (S1–S5 hold on both: K1)."""
    database = await open_db(store_url, tmp_path)
    yield database
    await database.aclose()


async def reopen(db: Db) -> Db:
    await db.aclose()
    return await open_db(db.url, db.data_dir)


async def new_store(db: Storage, key: NodeKey | None = None) -> OpStore:
    return await OpStore.open(db, key or NodeKey.generate(), clock=Clock())


async def count_ops(db: Storage) -> int:
    return int((await db.read("SELECT COUNT(*) FROM ops"))[0][0])


async def with_items(db: Storage, n: int) -> OpStore:
    store = await new_store(db)
    await store.append(DEMO, ALICE)
    for i in range(n):
        await store.create_item("demo", ALICE, kind=ItemKind.STORY, title=f"story {i + 1}")
    return store


# --- materialised tables -----------------------------------------------------------------


async def test_create_update_purge_show_in_the_tables(db: Db) -> None:
    store = await with_items(db, 2)
    assert [(i.number, i.title) for i in await store.items("demo")] == [
        (1, "story 1"),
        (2, "story 2"),
    ]
    applied = await store.append(UpdateItem("demo", 1, stage=Coding(), title="Login"), ALICE)
    assert applied.effects == ()
    item = await store.item("demo", 1)
    assert item is not None
    assert (item.stage, item.title, item.origin) == (Coding(), "Login", ALICE)
    assert item.updated_at > item.created_at

    purged = await store.append(PurgeItem("demo", 1), ALICE)
    assert purged.effects == ("item row",)
    assert await store.item("demo", 1) is None
    assert [i.number for i in await store.items("demo")] == [2]
    assert [p.name for p in await store.projects()] == ["demo"]


async def test_items_survive_a_restart_exactly(db: Db) -> None:
    store = await with_items(db, 3)
    await store.append(UpdateItem("demo", 2, stage=Qa(), depends_on=(1, 3), epic=3), ALICE)
    before = await store.items("demo")
    db = await reopen(db)
    try:
        assert await (await new_store(db)).items("demo") == before
    finally:
        await db.aclose()


async def test_numbers_are_never_reused_after_purge_even_after_reopen(db: Db) -> None:
    store = await with_items(db, 3)
    await store.append(PurgeItem("demo", 3), ALICE)
    fourth = await store.create_item("demo", ALICE, kind=ItemKind.BUG, title="four")
    assert fourth.number == 4

    db = await reopen(db)
    try:
        store = await new_store(db)
        assert await store.next_number("demo") == 5
        await store.append(PurgeItem("demo", 4), ALICE)
        assert (await store.create_item("demo", ALICE, kind=ItemKind.BUG, title="x")).number == 5
        ops = await count_ops(db)
        reuse = Item(number=3, kind=ItemKind.BUG, title="again", origin=ALICE, created_at=1.0,
                     updated_at=1.0)  # fmt: skip
        with pytest.raises(PipelineError, match="never reused"):
            await store.append(CreateItem("demo", reuse), ALICE)
        assert await count_ops(db) == ops
    finally:
        await db.aclose()


async def test_concurrent_creations_get_distinct_numbers(db: Db) -> None:
    store = await with_items(db, 0)
    made = await asyncio.gather(
        *(store.create_item("demo", ALICE, kind=ItemKind.SPIKE, title=f"s{i}") for i in range(40))
    )
    assert sorted(item.number for item in made) == list(range(1, 41))


async def test_purge_is_idempotent_and_removes_the_items_timers(db: Db) -> None:
    store = await with_items(db, 2)
    for timer_id, number in (("a", 1), ("b", 1), ("c", 2)):
        await store.append(AddTimer(timer_id, "demo", number, 1e9, {"event": "start"}), ALICE)

    first = await store.append(PurgeItem("demo", 1), ALICE)
    assert first.effects == ("item row", "2 timers")
    assert [t.id for t in await store.timers()] == ["c"]
    tables = await read_live(db)

    again = await store.append(PurgeItem("demo", 1), ALICE)
    assert again.effects == ()
    assert await read_live(db) == tables
    with pytest.raises(PipelineError, match="no item #9"):
        await store.append(PurgeItem("demo", 9), ALICE)
    with pytest.raises(PipelineError, match="no item #1"):
        await store.append(AddTimer("d", "demo", 1, 1e9, {}), ALICE)


async def test_finishing_an_item_kills_its_timers(db: Db) -> None:
    store = await with_items(db, 1)
    await store.append(AddTimer("t", "demo", 1, 1e9, {"event": "qa_pass"}), ALICE)
    done = await store.append(UpdateItem("demo", 1, stage=Done()), ALICE)
    assert done.effects == ("1 timer",)
    assert await store.timers("demo") == []
    with pytest.raises(PipelineError, match="finished"):
        await store.append(AddTimer("u", "demo", 1, 1e9, {}), ALICE)


async def test_timers_cancel_and_rooms(db: Db) -> None:
    store = await with_items(db, 1)
    await store.append(AddTimer("t1", "demo", 1, 2e9, {"event": "start"}), ALICE)
    await store.append(AddTimer("t0", "demo", None, 1e9, {"say": "standup"}), ALICE)
    timers = await store.timers("demo")
    assert [(t.id, t.item, t.action) for t in timers] == [
        ("t0", None, {"say": "standup"}),
        ("t1", 1, {"event": "start"}),
    ]
    with pytest.raises(PipelineError, match="already exists"):
        await store.append(AddTimer("t1", "demo", 1, 3e9, {}), ALICE)
    assert (await store.append(CancelTimer("t1", "demo"), ALICE)).effects == ("timer",)
    assert (await store.append(CancelTimer("t1", "demo"), ALICE)).effects == ()

    await store.append(SetRoom("web:lobby", project="demo"), ALICE)
    await store.append(SetRoom("web:lobby", ambient=True), ALICE)
    await store.append(SetRoom("slack:C1", ambient=False), ALICE)
    room = await store.room("web:lobby")
    assert room is not None and (room.project, room.ambient) == ("demo", True)
    assert [(r.session, r.project) for r in await store.rooms()] == [
        ("slack:C1", None),
        ("web:lobby", "demo"),
    ]
    with pytest.raises(PipelineError, match="already exists"):
        await store.append(DEMO, ALICE)


# --- atomicity and attribution -----------------------------------------------------------


@pytest.mark.parametrize("blank", ["none", "blank field"])
async def test_unattributed_changes_are_refused_before_any_write(db: Db, blank: str) -> None:
    store = await new_store(db)
    origin: object = None
    if blank == "blank field":
        origin = UserOrigin("web", "alice", "lobby")
        object.__setattr__(origin, "user", " ")
    with pytest.raises(PipelineError, match="origin"):
        await store.append(DEMO, origin)  # type: ignore[arg-type]
    with pytest.raises(PipelineError, match="origin"):
        await store.create_item("demo", origin, kind=ItemKind.BUG, title="x")  # type: ignore[arg-type]
    assert await count_ops(db) == 0
    assert all(rows == [] for rows in (await read_live(db)).values())
    assert store.next_seq == 1


async def test_a_refused_op_changes_nothing_and_spares_its_neighbours(db: Db) -> None:
    store = await with_items(db, 1)
    before = await count_ops(db)
    changes = [SetRoom(f"web:r{i}", ambient=True) for i in range(10)]
    results = await asyncio.gather(
        *(store.append(change, ALICE) for change in changes),
        store.append(UpdateItem("demo", 7, title="ghost"), ALICE),
        return_exceptions=True,
    )
    assert isinstance(results[-1], PipelineError) and "no item #7" in str(results[-1])
    assert not any(isinstance(r, BaseException) for r in results[:-1])
    assert await count_ops(db) == before + 10
    with pytest.raises(PipelineError):  # a batch is all or nothing
        await store.append_many([SetRoom("web:x", ambient=True), PurgeItem("demo", 5)], ALICE)
    assert await store.room("web:x") is None
    assert (await audit.verify(db)).ok


async def test_the_op_log_refuses_update_and_delete(db: Db) -> None:
    await with_items(db, 1)
    for statement in ("UPDATE ops SET kind = 'x'", "DELETE FROM ops"):
        with pytest.raises(StoreError, match="append-only"):
            await db.write(lambda conn, sql=statement: conn.execute(sql))
    assert await count_ops(db) == 2


# --- author sequence numbers (lesson 511) ------------------------------------------------


async def test_a_brand_new_node_starts_at_seq_1(db: Db) -> None:
    store = await new_store(db)
    assert store.next_seq == 1
    assert (await store.append(DEMO, ALICE)).seq == 1


async def test_seq_resumes_after_the_highest_own_seq(db: Db) -> None:
    key = NodeKey.generate()
    store = await new_store(db, key)
    await store.append_many([SetRoom(f"web:{i}", ambient=True) for i in range(100)], ALICE)
    assert store.next_seq == 101
    db = await reopen(db)
    try:
        store = await new_store(db, key)
        assert store.next_seq == 101
        assert (await store.append(SetRoom("web:x", ambient=True), ALICE)).seq == 101
        other = await new_store(db)  # another key on the same log has its own sequence
        assert (await other.append(SetRoom("web:y", ambient=True), ALICE)).seq == 1
    finally:
        await db.aclose()


# --- replay order (S1) and audit ---------------------------------------------------------


async def test_replay_follows_rowid_not_seq(db: Db) -> None:
    """B's update (seq 1) is written after A's create (seq 11); replay must keep it."""
    a, b = await new_store(db), await new_store(db)
    await a.append_many([SetRoom(f"web:{i}", ambient=True) for i in range(9)], ALICE)
    await a.append(DEMO, ALICE)
    await a.create_item("demo", ALICE, kind=ItemKind.STORY, title="login")
    update = await b.append(UpdateItem("demo", 1, stage=Coding()), SystemOrigin("deps", "ready"))
    assert update.seq == 1

    report = await audit.verify(db)
    assert report.ok, str(report)
    assert (report.ops, report.authors) == (12, 2)
    db = await reopen(db)
    try:
        item = await (await new_store(db)).item("demo", 1)
        assert item is not None and item.stage == Coding()
        rows = await db.read(f"SELECT {OP_COLUMNS} FROM ops ORDER BY seq, rowid")
    finally:
        await db.aclose()
    by_seq = sqlite3.connect(":memory:")  # the prior art's bug: replay by seq loses it
    create_tables(by_seq)
    with pytest.raises(PipelineError, match="no item #1"):
        for row in rows:
            apply(by_seq, op_from_row(row))


async def test_verify_is_clean_and_replay_equals_the_live_tables(db: Db) -> None:
    store = await with_items(db, 3)
    await store.append(UpdateItem("demo", 1, stage=Abandoned("dup")), ALICE)
    await store.append(AddTimer("t", "demo", 2, 1.5e9, {"event": "start"}), ALICE)
    await store.append(PurgeItem("demo", 3), ALICE)
    await store.append(SetRoom("web:lobby", project="demo", ambient=True), ALICE)
    report = await audit.verify(db)
    assert report.ok and report.problem is None and "ok" in str(report)

    scratch = await Database.open(db.data_dir / "scratch.db")
    try:
        assert await audit.replay_into(db, scratch) == await count_ops(db)
        assert await read_live(scratch) == await read_live(db)
    finally:
        await scratch.aclose()


async def test_every_stored_op_signs_exactly_its_fields(db: Db) -> None:
    store = await with_items(db, 1)
    row = (await db.read(f"SELECT {OP_COLUMNS} FROM ops ORDER BY rowid DESC LIMIT 1"))[0]
    op = op_from_row(row)
    assert op.author == store.author and op.kind == "item.create" and op.item == 1
    assert parse_canonical(op.payload)["title"] == "story 1"
    assert parse_canonical(op.origin) == ALICE.to_dict()
    forged = SignedOp(**{**{f: getattr(op, f) for f in op.__slots__}, "ts": op.ts + 1})
    assert audit._first_bad_signature([op]) is None
    bad = audit._first_bad_signature([forged])
    assert bad is not None and bad.reason == "bad signature"


async def read_live(db: Storage) -> dict[str, list[tuple[object, ...]]]:
    tables = {}
    for table in ("projects", "items", "item_numbers", "timers", "rooms"):
        tables[table] = [tuple(r) for r in await db.read(f"SELECT * FROM {table} ORDER BY 1, 2")]
    return tables


# --- canonical JSON ----------------------------------------------------------------------


def test_canonical_json_is_one_byte_form() -> None:
    assert canonical_json({"b": [1, 2.5, (3, None)], "a": "é"}) == '{"a":"é","b":[1,2.5,[3,null]]}'
    for bad in ({1: "x"}, float("nan"), [float("inf")], {"a": {2}}, "\ud800"):
        with pytest.raises(PipelineError):
            canonical_json(bad)
    for text in ('{"b":1,"a":2}', '{"a": 1}', '{"a":NaN}', '{"a":1,"a":1}', "[1.00]"):
        with pytest.raises(PipelineError):
            parse_canonical(text)
    assert parse_canonical('{"a":[1.5,true]}') == {"a": [1.5, True]}


# --- the node key ------------------------------------------------------------------------


def test_node_key_is_created_private_and_reused(tmp_path: Path) -> None:
    data = tmp_path / "data"
    first = load_or_create(data)
    path = data / "node.key"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_or_create(data).public_hex == first.public_hex
    assert len(first.public_hex) == 64 and first.public_hex not in repr(first)
    assert [p.name for p in data.iterdir()] == ["node.key"]


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604])
def test_node_key_readable_by_others_is_refused(tmp_path: Path, mode: int) -> None:
    load_or_create(tmp_path)
    os.chmod(tmp_path / "node.key", mode)
    with pytest.raises(KeyFileError, match="readable by others"):
        load_or_create(tmp_path)


def test_damaged_or_linked_node_key_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "node.key"
    path.write_text("not hex\n")
    path.chmod(0o600)
    with pytest.raises(KeyFileError, match="damaged"):
        load_or_create(tmp_path)
    path.unlink()
    (tmp_path / "elsewhere").write_text("00" * 32)
    path.symlink_to(tmp_path / "elsewhere")
    with pytest.raises(KeyFileError):
        load_or_create(tmp_path)


def test_changes_check_themselves() -> None:
    with pytest.raises(PipelineError, match="project name"):
        CreateProject("Bad Name", "/x", "main", "UTC")
    with pytest.raises(PipelineError, match="must change something"):
        UpdateItem("demo", 1)
    with pytest.raises(PipelineError, match="single line"):
        UpdateItem("demo", 1, title="a\nb")
    with pytest.raises(PipelineError, match="not a stage"):
        UpdateItem("demo", 1, stage="coding")  # type: ignore[arg-type]
    with pytest.raises(PipelineError, match="JSON"):
        AddTimer("t", "demo", 1, 1.0, {"x": float("nan")})
    with pytest.raises(PipelineError):
        SetRoom("web:lobby")
    assert UpdateItem("demo", 1, stage=Backlog(), epic=None).to_payload() == {
        "stage": {"stage": "backlog"},
        "epic": None,
    }


async def test_verify_on_a_database_without_a_log_is_clean(db: Db) -> None:
    report = await audit.verify(db)
    assert report.ok and report.ops == 0
    assert await count_tables(db) == 0  # verify wrote nothing


async def count_tables(db: Storage) -> int:
    return len(await db.read("SELECT name FROM sqlite_master WHERE type = 'table'"))
