"""R5: a tampered op log is never accepted; ``verify`` names the first bad op or row.

Each test writes a real log with two authors, edits the database behind the store's back
(dropping the append-only triggers first, as an attacker with the file or a superuser login
would), then checks both the full audit and the startup check. On both backends (K1).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
import pytest

from bot.pgdb import PgConn
from bot.store_url import open_db, sqlite_path
from pipeline.audit import AuditReport, BadOp, OpLogError, RowMismatch, verify
from pipeline.canonical import canonical_json
from pipeline.envelope import origin_json, seal
from pipeline.keys import NodeKey, verify_signature
from pipeline.model import Coding, ItemKind, SystemOrigin, UserOrigin
from pipeline.ops import AddTimer, CreateProject, SetRoom, UpdateItem
from pipeline.storage import Conn
from pipeline.store import OpStore

ALICE = UserOrigin("web", "alice", "lobby")
BOT = SystemOrigin("timers", "test")
FIELDS = ("project", "item", "kind", "payload", "origin", "author", "seq", "ts", "sig")
Tamper = Callable[[Conn], object]
UNIQUE = (sqlite3.IntegrityError, psycopg.IntegrityError)


async def write_log(url: str, data_dir: Path) -> None:
    """rowid: 1 A project, 2 A #1, 3 A #2, 4 B move #1, 5 A retitle #2, 6 A room, 7 B timer."""
    db = await open_db(url, data_dir)
    try:
        a = await OpStore.open(db, NodeKey.generate())
        b = await OpStore.open(db, NodeKey.generate())
        await a.append(CreateProject("demo", "/srv/demo", "main", "UTC"), ALICE)
        await a.create_item("demo", ALICE, kind=ItemKind.STORY, title="story one")
        await a.create_item("demo", ALICE, kind=ItemKind.BUG, title="story two")
        await b.append(UpdateItem("demo", 1, stage=Coding()), BOT)
        await a.append(UpdateItem("demo", 2, title="renamed"), ALICE)
        await a.append(SetRoom("web:lobby", project="demo"), ALICE)
        await b.append(AddTimer("t1", "demo", 1, 1.8e9, {"event": "submit"}), BOT)
        assert (await verify(db)).ok
    finally:
        await db.aclose()


def row(conn: Conn, rowid: int) -> dict[str, object]:
    values = conn.execute(f"SELECT {', '.join(FIELDS)} FROM ops WHERE rowid = ?", (rowid,))
    return dict(zip(FIELDS, values.fetchone(), strict=True))


def put(conn: Conn, rowid: int, values: dict[str, object]) -> None:
    assignments = ", ".join(f"{name} = ?" for name in values)
    conn.execute(f"UPDATE ops SET {assignments} WHERE rowid = ?", (*values.values(), rowid))


def insert(conn: Conn, values: dict[str, object]) -> None:
    marks = ", ".join("?" * len(values))
    conn.execute(f"INSERT INTO ops ({', '.join(values)}) VALUES ({marks})", tuple(values.values()))


@contextmanager
def raw(url: str) -> Iterator[Conn]:
    """A connection behind the store's back (autocommit), without the append-only guards."""
    path = sqlite_path(url)
    if path is not None:
        conn = sqlite3.connect(path, isolation_level=None)
        try:
            conn.execute("DROP TRIGGER IF EXISTS ops_no_update")
            conn.execute("DROP TRIGGER IF EXISTS ops_no_delete")
            yield conn
        finally:
            conn.close()
        return
    with psycopg.connect(url, autocommit=True) as pg:
        pg.execute("DROP TRIGGER IF EXISTS ops_no_update ON ops")
        pg.execute("DROP TRIGGER IF EXISTS ops_no_delete ON ops")
        yield PgConn(pg)


async def audit_after(
    url: str, tmp_path: Path, tamper: Tamper
) -> tuple[AuditReport, OpLogError | None]:
    """Write the log, tamper with it, then run the audit and the startup check."""
    await write_log(url, tmp_path)
    with raw(url) as conn:
        tamper(conn)
    db = await open_db(url, tmp_path)
    try:
        report = await verify(db)
        try:
            await OpStore.open(db, NodeKey.generate())
        except OpLogError as exc:
            return report, exc
        return report, None
    finally:
        await db.aclose()


def bad_op(report: AuditReport) -> BadOp:
    assert not report.ok
    assert isinstance(report.problem, BadOp), str(report)
    return report.problem


async def test_a_flipped_payload_byte_is_named(store_url: str, tmp_path: Path) -> None:
    def flip(conn: Conn) -> None:
        payload = bytearray(str(row(conn, 3)["payload"]).encode())
        payload[payload.index(b"two")] ^= 0x01  # "two" -> "uwo"
        put(conn, 3, {"payload": payload.decode()})

    report, refused = await audit_after(store_url, tmp_path, flip)
    bad = bad_op(report)
    assert (bad.rowid, bad.seq, bad.kind, bad.reason) == (3, 3, "item.create", "bad signature")
    assert "op 3" in str(report) and "bad signature" in str(report)
    assert refused is not None and refused.problem == bad


async def test_reordered_ops_are_named(store_url: str, tmp_path: Path) -> None:
    def swap(conn: Conn) -> None:
        second, third = row(conn, 2), row(conn, 3)
        put(conn, 3, {"seq": -1})  # step aside of UNIQUE (author, seq)
        put(conn, 2, third)
        put(conn, 3, second)

    report, refused = await audit_after(store_url, tmp_path, swap)
    bad = bad_op(report)
    assert (bad.rowid, bad.seq) == (3, 2)
    assert "reordered" in bad.reason
    assert refused is not None and refused.problem == bad


async def test_a_truncated_log_is_named(store_url: str, tmp_path: Path) -> None:
    report, refused = await audit_after(
        store_url, tmp_path, lambda c: c.execute("DELETE FROM ops WHERE rowid = 7")
    )
    bad = bad_op(report)
    assert bad.rowid == 7 and "truncated" in bad.reason
    assert refused is not None and refused.problem == bad


async def test_an_op_deleted_from_the_middle_is_named(store_url: str, tmp_path: Path) -> None:
    report, refused = await audit_after(
        store_url, tmp_path, lambda c: c.execute("DELETE FROM ops WHERE rowid = 4")
    )
    bad = bad_op(report)
    assert bad.rowid == 5 and "4..4 are missing" in bad.reason
    assert refused is not None


async def test_truncation_that_hides_its_tracks_still_fails_the_replay(
    store_url: str, tmp_path: Path
) -> None:
    def cut(conn: Conn) -> None:
        conn.execute("DELETE FROM ops WHERE rowid = 7")
        conn.execute("UPDATE sqlite_sequence SET seq = 6 WHERE name = 'ops'")

    report, refused = await audit_after(store_url, tmp_path, cut)
    assert isinstance(report.problem, RowMismatch), str(report)
    assert report.problem.table == "timers" and report.problem.key == ("t1",)
    assert report.problem.replayed is None
    assert refused is None  # only the full audit can see this one


async def test_another_authors_op_replayed_under_a_new_key_is_named(
    store_url: str, tmp_path: Path
) -> None:
    def replay(conn: Conn) -> None:
        b_author = row(conn, 4)["author"]
        insert(conn, {**row(conn, 6), "author": b_author, "seq": 3})

    report, refused = await audit_after(store_url, tmp_path, replay)
    bad = bad_op(report)
    assert (bad.rowid, bad.seq, bad.kind, bad.reason) == (8, 3, "room.set", "bad signature")
    assert refused is not None and refused.problem == bad


async def test_an_exact_duplicate_op_cannot_even_be_stored(store_url: str, tmp_path: Path) -> None:
    def duplicate(conn: Conn) -> None:
        with pytest.raises(UNIQUE):
            insert(conn, row(conn, 6))
        insert(conn, {**row(conn, 6), "seq": 99})  # same op, fresh seq: signature breaks

    bad = bad_op((await audit_after(store_url, tmp_path, duplicate))[0])
    assert (bad.rowid, bad.reason) == (8, "bad signature")


async def test_swapped_author_keys_are_named(store_url: str, tmp_path: Path) -> None:
    def swap_keys(conn: Conn) -> None:
        a, b = row(conn, 3)["author"], row(conn, 4)["author"]
        put(conn, 3, {"author": b, "seq": 50})
        put(conn, 4, {"author": a, "seq": 51})

    report, refused = await audit_after(store_url, tmp_path, swap_keys)
    bad = bad_op(report)
    assert (bad.rowid, bad.reason) == (3, "bad signature")
    assert refused is not None and refused.problem == bad


async def test_a_garbled_signature_or_key_is_named(store_url: str, tmp_path: Path) -> None:
    def garble(conn: Conn) -> None:
        put(conn, 2, {"sig": b"\x00" * 10})
        put(conn, 5, {"author": "zz" * 32})

    bad = bad_op((await audit_after(store_url, tmp_path, garble))[0])
    assert (bad.rowid, bad.reason) == (2, "malformed signature")


async def test_a_validly_signed_foreign_op_fails_the_replay(store_url: str, tmp_path: Path) -> None:
    def smuggle(conn: Conn) -> None:
        change = SetRoom("web:evil", ambient=True)
        payload = canonical_json(change.to_payload())
        op = seal(change, payload, origin_json(ALICE), NodeKey.generate(), 1, 1.0)
        insert(conn, {name: getattr(op, name) for name in FIELDS})

    report, refused = await audit_after(store_url, tmp_path, smuggle)
    assert isinstance(report.problem, RowMismatch), str(report)
    assert (report.problem.table, report.problem.key) == ("rooms", ("web:evil",))
    assert report.problem.live is None and report.problem.replayed is not None
    assert refused is None


async def test_an_edited_materialised_row_is_named(store_url: str, tmp_path: Path) -> None:
    report, refused = await audit_after(
        store_url,
        tmp_path,
        lambda c: c.execute("UPDATE items SET title = 'hacked' WHERE number = 2"),
    )
    problem = report.problem
    assert isinstance(problem, RowMismatch), str(report)
    assert (problem.table, problem.key) == ("items", ("demo", 2))
    assert problem.live is not None and "hacked" in problem.live
    assert "table items row ('demo', 2)" in str(report)
    assert refused is None


# --- the startup checkpoint: faster restarts, same verdict --------------------------------


def tamper_file(url: str, tamper: Tamper) -> None:
    with raw(url) as conn:
        tamper(conn)


async def open_with(url: str, data_dir: Path, key: NodeKey) -> OpLogError | None:
    db = await open_db(url, data_dir)
    try:
        await OpStore.open(db, key)
    except OpLogError as exc:
        return exc
    finally:
        await db.aclose()
    return None


@pytest.fixture
def signature_checks(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """Count the signature checks the store performs (call counting only): verifications,
    and the re-signing that checks the node's own ops (:meth:`NodeKey.signed`)."""
    calls: list[object] = []
    real, real_signed = verify_signature, NodeKey.signed

    def counting(author: object, message: bytes, signature: object) -> str | None:
        calls.append(author)
        return real(author, message, signature)

    def counting_signed(key: NodeKey, message: bytes, signature: object) -> bool:
        calls.append(key.public_hex)
        return real_signed(key, message, signature)

    monkeypatch.setattr("pipeline.audit.verify_signature", counting)
    monkeypatch.setattr(NodeKey, "signed", counting_signed)
    return calls


async def test_a_restart_verifies_only_the_new_ops(
    store_url: str, tmp_path: Path, signature_checks: list[object]
) -> None:
    key = NodeKey.generate()
    await write_log(store_url, tmp_path)
    signature_checks.clear()
    assert await open_with(store_url, tmp_path, key) is None
    assert len(signature_checks) == 7  # first open with this key: everything
    signature_checks.clear()
    db = await open_db(store_url, tmp_path)
    try:
        store = await OpStore.open(db, key)
        assert signature_checks == []  # nothing new since the checkpoint
        await store.append(SetRoom("web:new", ambient=True), ALICE)
        await OpStore.open(db, key)
        assert signature_checks == [key.public_hex]
    finally:
        await db.aclose()


async def test_tampering_under_the_checkpoint_is_still_named(
    store_url: str, tmp_path: Path, signature_checks: list[object]
) -> None:
    key = NodeKey.generate()
    await write_log(store_url, tmp_path)
    assert await open_with(store_url, tmp_path, key) is None

    def flip(conn: Conn) -> None:
        put(conn, 3, {"payload": str(row(conn, 3)["payload"]).replace("two", "twp")})

    tamper_file(store_url, flip)
    refused = await open_with(store_url, tmp_path, key)
    assert refused is not None and isinstance(refused.problem, BadOp)
    assert (refused.problem.rowid, refused.problem.reason) == (3, "bad signature")


async def test_a_changed_prefix_gets_the_full_check_not_a_different_verdict(
    store_url: str, tmp_path: Path, signature_checks: list[object]
) -> None:
    """Swapping two commuting ops of different authors breaks no signature, seq or replay."""
    key = NodeKey.generate()
    await write_log(store_url, tmp_path)
    assert await open_with(store_url, tmp_path, key) is None

    def swap(conn: Conn) -> None:
        third, fourth = row(conn, 3), row(conn, 4)
        put(conn, 3, {**fourth, "seq": -1})
        put(conn, 4, third)
        put(conn, 3, fourth)

    tamper_file(store_url, swap)
    signature_checks.clear()
    assert await open_with(store_url, tmp_path, key) is None
    assert len(signature_checks) == 7  # the checkpoint no longer matched: all re-verified


async def test_a_signed_op_with_a_blank_origin_is_refused_by_replay(
    store_url: str, tmp_path: Path
) -> None:
    def smuggle(conn: Conn) -> None:
        change = SetRoom("web:anon", ambient=True)
        payload = canonical_json(change.to_payload())
        op = seal(change, payload, '{"reason":"","system":"x"}', NodeKey.generate(), 1, 1.0)
        insert(conn, {name: getattr(op, name) for name in FIELDS})

    bad = bad_op((await audit_after(store_url, tmp_path, smuggle))[0])
    assert bad.rowid == 8 and "replay refused it" in bad.reason and "origin" in bad.reason
