"""The op log's schema and the one function that applies an op to the materialised tables.

:func:`apply` is shared by :meth:`pipeline.store.OpStore.append` (inside the op's own
transaction) and by replay (:mod:`pipeline.audit`), so replaying the log in ``rowid`` order
rebuilds the tables exactly. It reads nothing but the tables and the op — no clock, no
environment — and refuses an op that does not fit the current state by raising
:class:`PipelineError` before it has changed anything the caller's transaction keeps.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from typing import Any, Protocol

from pipeline.canonical import canonical_json, parse_canonical
from pipeline.envelope import SignedOp
from pipeline.model import Item, ItemKind, Origin, PipelineError, is_finished, stage_from_dict
from pipeline.model import stage_to_dict as _stage_dict
from pipeline.ops import (
    KEEP,
    AddTimer,
    CancelTimer,
    CreateItem,
    CreateProject,
    PurgeItem,
    SetRoom,
    UpdateItem,
)

SCHEMA_STATEMENTS: tuple[str, ...] = (
    """CREATE TABLE IF NOT EXISTS ops (
        rowid INTEGER PRIMARY KEY, project TEXT, item INTEGER, kind TEXT NOT NULL,
        payload TEXT NOT NULL, origin TEXT NOT NULL, author TEXT NOT NULL,
        seq INTEGER NOT NULL, ts REAL NOT NULL, sig BLOB NOT NULL, UNIQUE (author, seq))""",
    """CREATE TRIGGER IF NOT EXISTS ops_no_update BEFORE UPDATE ON ops
        BEGIN SELECT RAISE(ABORT, 'the op log is append-only'); END""",
    """CREATE TRIGGER IF NOT EXISTS ops_no_delete BEFORE DELETE ON ops
        BEGIN SELECT RAISE(ABORT, 'the op log is append-only'); END""",
    """CREATE TABLE IF NOT EXISTS projects (
        name TEXT PRIMARY KEY, path TEXT NOT NULL, base_branch TEXT NOT NULL,
        timezone TEXT NOT NULL, origin TEXT NOT NULL, created_at REAL NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS items (
        project TEXT NOT NULL, number INTEGER NOT NULL, kind TEXT NOT NULL,
        title TEXT NOT NULL, body TEXT NOT NULL, stage TEXT NOT NULL,
        depends_on TEXT NOT NULL, epic INTEGER, retries INTEGER NOT NULL,
        origin TEXT NOT NULL, created_at REAL NOT NULL, updated_at REAL NOT NULL,
        PRIMARY KEY (project, number))""",
    """CREATE TABLE IF NOT EXISTS item_numbers (
        project TEXT PRIMARY KEY, last INTEGER NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS timers (
        id TEXT PRIMARY KEY, project TEXT NOT NULL, item INTEGER, fire_at REAL NOT NULL,
        action TEXT NOT NULL, origin TEXT NOT NULL, created_at REAL NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS timers_by_item ON timers (project, item)",
    "CREATE INDEX IF NOT EXISTS timers_by_time ON timers (fire_at, id)",
    """CREATE TABLE IF NOT EXISTS rooms (
        session TEXT PRIMARY KEY, project TEXT, ambient INTEGER NOT NULL DEFAULT 0)""",
)
SCHEMA = ";\n".join(SCHEMA_STATEMENTS) + ";\n"
"""The op log and its materialised tables; every statement is idempotent."""

MATERIALISED: dict[str, str] = {
    "projects": "name",
    "items": "project, number",
    "item_numbers": "project",
    "timers": "id",
    "rooms": "session",
}
"""Each materialised table and the key it is compared in (see :func:`read_tables`)."""

ITEM_COLUMNS = (
    "project, number, kind, title, body, stage, depends_on, epic, retries, origin,"
    " created_at, updated_at"
)
Effects = tuple[str, ...]
"""What an op cleared, for replies: e.g. ``("item row", "2 timers")``; empty when nothing."""


class Sql(Protocol):
    """The one call :func:`apply` needs; ``aiosqlite.Connection`` satisfies it."""

    async def execute_fetchall(
        self, sql: str, parameters: Iterable[Any] | None = None
    ) -> Iterable[Any]: ...


async def _rows(sql: Sql, query: str, params: tuple[Any, ...] = ()) -> list[Any]:
    return list(await sql.execute_fetchall(query, params))


def item_row(project: str, item: Item) -> tuple[Any, ...]:
    """The ``items`` row for ``item``, in :data:`ITEM_COLUMNS` order."""
    return (
        project, item.number, item.kind.value, item.title, item.body,
        canonical_json(_stage_dict(item.stage)), canonical_json(list(item.depends_on)),
        item.epic, item.retries, canonical_json(item.origin.to_dict()),
        float(item.created_at), float(item.updated_at),
    )  # fmt: skip


def item_from_row(row: Any) -> Item:
    """Rebuild an :class:`Item` from an ``items`` row in :data:`ITEM_COLUMNS` order."""
    return Item(
        number=row[1], kind=ItemKind(row[2]), title=row[3], body=row[4],
        stage=stage_from_dict(parse_canonical(row[5])),
        depends_on=tuple(parse_canonical(row[6])), epic=row[7], retries=row[8],
        origin=Origin.from_dict(parse_canonical(row[9])), created_at=row[10],
        updated_at=row[11],
    )  # fmt: skip


async def last_number(sql: Sql, project: str) -> int:
    """The highest item number ``project`` ever issued (purged ones included), or 0."""
    rows = await _rows(sql, "SELECT last FROM item_numbers WHERE project = ?", (project,))
    return int(rows[0][0]) if rows else 0


async def read_item(sql: Sql, project: str, number: int) -> Item | None:
    """The item's current row, or None when it never existed or was purged."""
    query = f"SELECT {ITEM_COLUMNS} FROM items WHERE project = ? AND number = ?"
    rows = await _rows(sql, query, (project, number))
    return item_from_row(rows[0]) if rows else None


async def read_tables(sql: Sql) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every materialised table, in key order: what audit compares."""
    out: dict[str, list[tuple[Any, ...]]] = {}
    for table, key in MATERIALISED.items():
        rows = await _rows(sql, f"SELECT * FROM {table} ORDER BY {key}")
        out[table] = [tuple(row) for row in rows]
    return out


async def apply(sql: Sql, op: SignedOp) -> Effects:
    """Apply ``op`` to the materialised tables; the caller owns the transaction.

    Guarantees: deterministic (same tables + same op → same tables); used verbatim by
    append and by replay. Refusals (unknown item, reused number, duplicate project or timer
    id, timer on a finished item) raise before the first statement that changes a row.

    Raises:
        PipelineError: the op is malformed or does not fit the current tables.
    """
    change = op.decode()
    match change:
        case CreateProject():
            return await _create_project(sql, change, op)
        case CreateItem():
            return await _create_item(sql, change)
        case UpdateItem():
            return await _update_item(sql, change, op)
        case PurgeItem():
            return await _purge_item(sql, change)
        case AddTimer():
            return await _add_timer(sql, change, op)
        case CancelTimer():
            rows = await _rows(sql, "DELETE FROM timers WHERE id = ? RETURNING id", (change.id,))
            return ("timer",) if rows else ()
        case SetRoom():
            return await _set_room(sql, change)


async def _create_project(sql: Sql, change: CreateProject, op: SignedOp) -> Effects:
    if await _rows(sql, "SELECT 1 FROM projects WHERE name = ?", (change.name,)):
        raise PipelineError(f"project {change.name!r} already exists")
    await sql.execute_fetchall(
        "INSERT INTO projects (name, path, base_branch, timezone, origin, created_at)"
        " VALUES (?, ?, ?, ?, ?, ?)",
        (change.name, change.path, change.base_branch, change.timezone, op.origin, op.ts),
    )
    return ()


async def _create_item(sql: Sql, change: CreateItem) -> Effects:
    number, last = change.item.number, await last_number(sql, change.project)
    if number <= last:
        raise PipelineError(
            f"#{number} was already used in {change.project} (numbers are never reused;"
            f" the last was #{last})"
        )
    await sql.execute_fetchall(
        f"INSERT INTO items ({ITEM_COLUMNS}) VALUES ({', '.join('?' * 12)})",
        item_row(change.project, change.item),
    )
    await sql.execute_fetchall(
        "INSERT INTO item_numbers (project, last) VALUES (?, ?)"
        " ON CONFLICT (project) DO UPDATE SET last = excluded.last",
        (change.project, number),
    )
    return ()


async def _delete_timers(sql: Sql, project: str, number: int) -> Effects:
    query = "DELETE FROM timers WHERE project = ? AND item = ? RETURNING id"
    gone = len(await _rows(sql, query, (project, number)))
    return (f"{gone} timer{'s' * (gone != 1)}",) if gone else ()


async def _update_item(sql: Sql, change: UpdateItem, op: SignedOp) -> Effects:
    old = await read_item(sql, change.project, change.number)
    if old is None:
        raise PipelineError(f"no item #{change.number} in {change.project}")
    new = replace(old, **change.changes(), updated_at=op.ts)  # Item re-checks the whole
    row = item_row(change.project, new)
    await sql.execute_fetchall(
        "UPDATE items SET kind = ?, title = ?, body = ?, stage = ?, depends_on = ?, epic = ?,"
        " retries = ?, origin = ?, created_at = ?, updated_at = ?"
        " WHERE project = ? AND number = ?",
        (*row[2:], change.project, change.number),
    )
    if is_finished(new.stage):  # T1: timers die with their item
        return await _delete_timers(sql, change.project, change.number)
    return ()


async def _purge_item(sql: Sql, change: PurgeItem) -> Effects:
    if change.number > await last_number(sql, change.project):
        raise PipelineError(f"no item #{change.number} in {change.project}")
    query = "DELETE FROM items WHERE project = ? AND number = ? RETURNING number"
    removed = await _rows(sql, query, (change.project, change.number))
    timers = await _delete_timers(sql, change.project, change.number)
    return (("item row",) if removed else ()) + timers


async def _add_timer(sql: Sql, change: AddTimer, op: SignedOp) -> Effects:
    if await _rows(sql, "SELECT 1 FROM timers WHERE id = ?", (change.id,)):
        raise PipelineError(f"timer {change.id!r} already exists")
    if change.item is not None:
        item = await read_item(sql, change.project, change.item)
        if item is None:
            raise PipelineError(f"no item #{change.item} in {change.project}")
        if is_finished(item.stage):
            raise PipelineError(f"#{change.item} is finished; it takes no timers")
    await sql.execute_fetchall(
        "INSERT INTO timers (id, project, item, fire_at, action, origin, created_at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?)",
        (change.id, change.project, change.item, float(change.fire_at),
         canonical_json(dict(change.action)), op.origin, op.ts),
    )  # fmt: skip
    return ()


async def _set_room(sql: Sql, change: SetRoom) -> Effects:
    await sql.execute_fetchall(
        "INSERT INTO rooms (session) VALUES (?) ON CONFLICT (session) DO NOTHING",
        (change.session,),
    )
    if change.project is not KEEP:
        query = "UPDATE rooms SET project = ? WHERE session = ?"
        await sql.execute_fetchall(query, (change.project, change.session))
    if change.ambient is not KEEP:
        query = "UPDATE rooms SET ambient = ? WHERE session = ?"
        await sql.execute_fetchall(query, (int(change.ambient), change.session))
    return ()
