"""Decoding and replaying the op log: the shortcuts replay takes keep every check it had.

Replay (``audit verify``, ``replay_into``) decodes each op as strictly as a new change, but
reuses what repeats across a log (update payloads, origins, project names, stages) and holds
a run of item changes in memory before writing each row once. These tests pin that every
refusal still happens, for every op, and that the tables come out as the store wrote them.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from bot.db import Database
from pipeline import audit
from pipeline.canonical import parse_canonical
from pipeline.envelope import OP_COLUMNS, SignedOp, op_from_row
from pipeline.errors import PipelineError
from pipeline.keys import NodeKey
from pipeline.materialise import create_tables, read_tables
from pipeline.model import Abandoned, Coding, Item, ItemKind, Qa, UserOrigin, stage_from_dict
from pipeline.op_fields import project_name
from pipeline.ops import AddTimer, CreateProject, PurgeItem, SetRoom, UpdateItem
from pipeline.origin import Origin
from pipeline.store import OpStore

ALICE = UserOrigin("web", "alice", "lobby")
MOVE = '{"stage":{"stage":"coding"}}'


def update_op(project: object, item: object, payload: str = MOVE) -> SignedOp:
    origin = '{"room":"lobby","transport":"web","user":"alice"}'
    return SignedOp(project, item, "item.update", payload, origin, "a" * 64, 1, 1.0)  # type: ignore[arg-type]


def test_a_repeated_update_payload_decodes_to_each_ops_own_item() -> None:
    first, second = update_op("demo", 1).decode(), update_op("other", 7).decode()
    assert first == UpdateItem("demo", 1, stage=Coding())
    assert second == UpdateItem("other", 7, stage=Coding())
    assert second.to_payload() == {"stage": {"stage": "coding"}}


@pytest.mark.parametrize(
    ("project", "item", "why"),
    [("Not A Name", 1, "bad project name"), ("demo", 0, "item number"),
     ("demo", None, "item number"), (["demo"], 1, "bad project name")],
)  # fmt: skip
def test_a_repeated_update_payload_still_checks_project_and_item(
    project: object, item: object, why: str
) -> None:
    update_op("demo", 1).decode()  # the payload is now known
    with pytest.raises(PipelineError, match=why):
        update_op(project, item).decode()


def test_an_update_payload_that_is_not_canonical_is_refused_every_time() -> None:
    for _ in range(2):
        with pytest.raises(PipelineError, match="canonical"):
            update_op("demo", 1, '{"stage": {"stage":"coding"}}').decode()


def test_parse_canonical_refuses_what_canonical_json_refuses() -> None:
    deep = "[" * 40 + "]" * 40
    for text in ("[1e999]", "[-1e999]", deep, '"\ud800"'):
        with pytest.raises(PipelineError):
            parse_canonical(text)
    assert parse_canonical("[" * 30 + "]" * 30) == parse_canonical("[" * 30 + "]" * 30)
    assert parse_canonical('{"a":"\\n","b":[1,2.5,null]}') == {"a": "\n", "b": [1, 2.5, None]}


def test_an_origin_with_a_blank_field_is_refused_every_time() -> None:
    for _ in range(2):
        with pytest.raises(PipelineError, match="origin user"):
            Origin.from_dict({"transport": "web", "user": " ", "room": "lobby"})
    assert Origin.from_dict({"transport": "web", "user": "alice", "room": "lobby"}) == ALICE
    with pytest.raises(PipelineError, match="origin needs"):
        Origin.from_dict({"transport": "web", "user": "alice"})


def test_a_project_name_is_checked_whatever_its_type() -> None:
    assert project_name("demo") == project_name("demo") == "demo"
    for bad in (["demo"], {"demo": 1}, b"demo", "Demo", ""):
        with pytest.raises(PipelineError, match="bad project name"):
            project_name(bad)


def test_a_bare_stage_decodes_to_its_stage_and_a_malformed_one_is_refused() -> None:
    assert stage_from_dict({"stage": "qa"}) == Qa()
    for bad in ({"stage": ["qa"]}, {"stage": "nope"}, {"stage": "abandoned"}, {"name": "qa"}):
        with pytest.raises(PipelineError):
            stage_from_dict(bad)


def test_a_move_checks_the_stage_and_time_and_other_changes_check_everything() -> None:
    item = Item(number=3, kind=ItemKind.BUG, title="Crash", origin=ALICE, created_at=1.0,
                updated_at=1.0, depends_on=(1,))  # fmt: skip
    moved = item.changed(stage=Coding(), updated_at=2.0)
    assert moved == Item(number=3, kind=ItemKind.BUG, title="Crash", origin=ALICE, created_at=1.0,
                         updated_at=2.0, depends_on=(1,), stage=Coding())  # fmt: skip
    assert item.stage != Coding()  # the original is untouched
    for bad in ({"stage": "coding"}, {"updated_at": float("nan")}, {"title": " "},
                {"depends_on": (3,)}, {"epic": 3}):  # fmt: skip
        with pytest.raises(PipelineError):
            item.changed(**bad)


async def test_replay_writes_the_tables_the_store_wrote(tmp_path: Path) -> None:
    """Item changes interleaved with ops that read or delete items (timers, purges, rooms):
    replay holds the item rows back but writes them before each such op."""
    db = await Database.open(tmp_path / "live.db")
    try:
        store = await OpStore.open(db, NodeKey.generate())
        await store.append(CreateProject("demo", "/srv/demo", "main", "UTC"), ALICE)
        for n in range(1, 6):
            await store.create_item("demo", ALICE, kind=ItemKind.STORY, title=f"story {n}")
        await store.append(UpdateItem("demo", 1, stage=Coding()), ALICE)
        await store.append(AddTimer("t1", "demo", 1, 2e9, {"event": "start"}), ALICE)
        await store.append(UpdateItem("demo", 1, stage=Qa(), title="story one"), ALICE)
        await store.append(UpdateItem("demo", 2, stage=Coding()), ALICE)
        await store.append(AddTimer("t2", "demo", 2, 2e9, {"event": "start"}), ALICE)
        await store.append(UpdateItem("demo", 2, stage=Abandoned("dup")), ALICE)  # drops t2
        await store.append(PurgeItem("demo", 3), ALICE)
        await store.append(SetRoom("web:lobby", project="demo"), ALICE)
        await store.create_item("demo", ALICE, kind=ItemKind.BUG, title="story 6")
        await store.append(UpdateItem("demo", 6, stage=Coding()), ALICE)
        rows = await db.read(f"SELECT {OP_COLUMNS} FROM ops ORDER BY rowid")
        live = await db.write(read_tables)
        assert (await audit.verify(db)).ok
    finally:
        await db.aclose()
    scratch = sqlite3.connect(":memory:", isolation_level=None)
    create_tables(scratch)
    assert audit.replay(scratch, [op_from_row(row) for row in rows]) is None
    assert read_tables(scratch) == live
    assert [row[0] for row in live["timers"]] == ["t1"]
    assert [(row[1], row[3]) for row in live["items"]] == [
        (1, "story one"), (2, "story 2"), (4, "story 4"), (5, "story 5"), (6, "story 6"),
    ]  # fmt: skip


def test_replay_refuses_an_update_of_an_item_it_never_created() -> None:
    scratch = sqlite3.connect(":memory:", isolation_level=None)
    create_tables(scratch)
    op = SignedOp(
        "demo", 9, "item.update", MOVE, '{"room":"lobby","transport":"web","user":"alice"}',
        "a" * 64, 1, 1.0, rowid=1,
    )  # fmt: skip
    bad = audit.replay(scratch, [op])
    assert bad is not None and "no item #9 in demo" in bad.reason


async def test_verify_with_the_authors_own_key_still_names_a_tampered_op(tmp_path: Path) -> None:
    """The node's own ops are checked by signing them again: a changed byte or a foreign
    signature is still a bad signature, and another author's ops are verified as before."""
    key, other = NodeKey.generate(), NodeKey.generate()
    db = await Database.open(tmp_path / "live.db")
    try:
        store = await OpStore.open(db, key)
        await store.append(CreateProject("demo", "/srv/demo", "main", "UTC"), ALICE)
        await store.create_item("demo", ALICE, kind=ItemKind.STORY, title="story two")
        await (await OpStore.open(db, other)).append(UpdateItem("demo", 1, stage=Coding()), ALICE)
        assert (await audit.verify(db, key=key)).ok
    finally:
        await db.aclose()
    conn = sqlite3.connect(tmp_path / "live.db", isolation_level=None)
    conn.execute("DROP TRIGGER ops_no_update")
    payload = conn.execute("SELECT payload FROM ops WHERE rowid = 2").fetchone()[0]
    conn.execute("UPDATE ops SET payload = ? WHERE rowid = 2", (payload.replace("two", "uwo"),))
    conn.execute("UPDATE ops SET sig = ? WHERE rowid = 3", (key.sign(b"something else"),))
    conn.close()
    db = await Database.open(tmp_path / "live.db")
    try:
        for checker in (key, other, None):
            report = await audit.verify(db, key=checker)
            assert isinstance(report.problem, audit.BadOp), str(report)
            assert (report.problem.rowid, report.problem.reason) == (2, "bad signature")
        conn = sqlite3.connect(tmp_path / "live.db", isolation_level=None)
        conn.execute("UPDATE ops SET payload = ? WHERE rowid = 2", (payload,))
        conn.close()
        report = await audit.verify(db, key=key)  # now the other author's forged op
        assert isinstance(report.problem, audit.BadOp), str(report)
        assert (report.problem.rowid, report.problem.reason) == (3, "bad signature")
    finally:
        await db.aclose()
