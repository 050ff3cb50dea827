"""The op log's schema and the one function that applies an op to the materialised tables.

:func:`apply` is shared by :meth:`pipeline.store.OpStore.append` (inside the op's own
transaction) and by replay (:mod:`pipeline.audit`), so replaying the log in ``rowid`` order
rebuilds the tables exactly. It reads nothing but the tables and the op — no clock, no
environment — and refuses an op that does not fit the current state by raising
:class:`PipelineError`; the caller then rolls the whole transaction back.

:func:`apply` is synchronous, on a :class:`pipeline.storage.Conn`: the store runs a whole
append (sign, insert, apply) as one job on the database's writer thread (one thread hop per
commit group), and replay runs in a worker thread.
"""

from __future__ import annotations

import functools
from typing import Any, TypeVar

from pipeline.agent_ops import AgentProgress, ClaimAgent, ClearAgent, EndAgent
from pipeline.agent_rows import AGENT_RUNS_TABLE, apply_agent
from pipeline.canonical import canonical_json, loads
from pipeline.envelope import SignedOp
from pipeline.errors import PipelineError
from pipeline.model import Item, ItemKind, Origin, Stage, column, is_finished, stage_from_dict
from pipeline.model import stage_to_dict as _stage_dict
from pipeline.node_ops import TRUSTED_TABLE, TrustNode, apply_node
from pipeline.ops import (
    KEEP,
    AddProject,
    AddTimer,
    CancelTimer,
    CreateItem,
    CreateProject,
    PurgeItem,
    RemoveProject,
    SetProject,
    SetRoom,
    UpdateItem,
)
from pipeline.project_rows import (
    PROJECTS_TABLE,
    add_project,
    add_project_columns,
    as_migrated,
    remove_project,
    set_project,
)
from pipeline.storage import Conn

SCHEMA_STATEMENTS: tuple[str, ...] = (
    """CREATE TABLE IF NOT EXISTS ops (
        rowid INTEGER PRIMARY KEY AUTOINCREMENT, project TEXT, item INTEGER, kind TEXT NOT NULL,
        payload TEXT NOT NULL, origin TEXT NOT NULL, author TEXT NOT NULL,
        seq INTEGER NOT NULL, ts REAL NOT NULL, sig BLOB NOT NULL, UNIQUE (author, seq))""",
    """CREATE TRIGGER IF NOT EXISTS ops_no_update BEFORE UPDATE ON ops
        BEGIN SELECT RAISE(ABORT, 'the op log is append-only'); END""",
    """CREATE TRIGGER IF NOT EXISTS ops_no_delete BEFORE DELETE ON ops
        BEGIN SELECT RAISE(ABORT, 'the op log is append-only'); END""",
    """CREATE TABLE IF NOT EXISTS op_checkpoints (
        author TEXT PRIMARY KEY, upto INTEGER NOT NULL, mac BLOB NOT NULL)""",
    PROJECTS_TABLE,
    """CREATE TABLE IF NOT EXISTS items (
        project TEXT NOT NULL, number INTEGER NOT NULL, kind TEXT NOT NULL,
        title TEXT NOT NULL, body TEXT NOT NULL, stage TEXT NOT NULL,
        depends_on TEXT NOT NULL, epic INTEGER, retries INTEGER NOT NULL,
        origin TEXT NOT NULL, created_at REAL NOT NULL, updated_at REAL NOT NULL,
        col TEXT NOT NULL, PRIMARY KEY (project, number))""",
    "CREATE INDEX IF NOT EXISTS items_by_column ON items (project, col, number)",
    """CREATE TABLE IF NOT EXISTS item_numbers (
        project TEXT PRIMARY KEY, last INTEGER NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS timers (
        id TEXT PRIMARY KEY, project TEXT NOT NULL, item INTEGER, fire_at REAL NOT NULL,
        action TEXT NOT NULL, origin TEXT NOT NULL, created_at REAL NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS timers_by_item ON timers (project, item)",
    "CREATE INDEX IF NOT EXISTS timers_by_time ON timers (fire_at, id)",
    """CREATE TABLE IF NOT EXISTS rooms (
        session TEXT PRIMARY KEY, project TEXT, ambient INTEGER NOT NULL DEFAULT 0,
        tools TEXT NOT NULL DEFAULT '[]')""",
    AGENT_RUNS_TABLE,
    TRUSTED_TABLE,
)
SCHEMA = ";\n".join(SCHEMA_STATEMENTS) + ";\n"
"""The op log and its materialised tables; every statement is idempotent. As a script it
suits a fresh database only: :func:`create_tables` also brings one written by an older
version up to date (it adds ``items.col`` before the index on it is created).

``items.col`` is derived, not recorded: the board column of the row's stage
(:func:`pipeline.model.column`), written by :func:`apply` with every item row so ``status``
can read one column's first items and every column's count through ``items_by_column``
without decoding the rest. Replay recomputes it, so ``audit verify`` checks it too."""

MATERIALISED: dict[str, str] = {
    "projects": "name",
    "items": "project, number",
    "item_numbers": "project",
    "timers": "id",
    "rooms": "session",
    "agent_runs": "project, item",
    "trusted_keys": "key",
}
"""Each materialised table and the key it is compared in (see :func:`read_tables`)."""

ITEM_COLUMNS = (
    "project, number, kind, title, body, stage, depends_on, epic, retries, origin,"
    " created_at, updated_at"
)
"""The columns an :class:`Item` is read from (:func:`item_from_row`); ``col`` follows them
in the table and in :func:`item_row`."""
Effects = tuple[str, ...]
"""What an op cleared, for replies: e.g. ``("item row", "2 timers")``; empty when nothing."""


T = TypeVar("T")


def _rows(conn: Conn, query: str, params: tuple[Any, ...] = ()) -> list[Any]:
    return conn.execute(query, params).fetchall()


def create_tables(conn: Conn) -> None:
    """Create the op log and the materialised tables if missing, and bring an ``items``
    table of an older version up to date (:func:`add_board_column`). Idempotent."""
    add_board_column(conn)
    add_project_columns(conn)
    add_rooms_tools_column(conn)
    for statement in SCHEMA_STATEMENTS:
        conn.execute(statement)


def has_board_column(conn: Conn) -> bool:
    """Whether ``conn``'s ``items`` table has ``col`` (False for an older one, or none)."""
    return any(row[1] == "col" for row in _rows(conn, "PRAGMA table_info(items)"))


def add_board_column(conn: Conn) -> bool:
    """Add ``items.col`` to an ``items`` table written before it existed, and fill it in
    from each row's stage; returns whether it did. Run it inside the caller's transaction.

    A stage that no longer decodes (an edited row) leaves ``col`` empty: the item is then on
    no board column, and ``audit verify`` names the row.
    """
    if "items" not in existing_tables(conn) or has_board_column(conn):
        return False
    conn.execute("ALTER TABLE items ADD COLUMN col TEXT NOT NULL DEFAULT ''")
    rows = _rows(conn, "SELECT rowid, stage FROM items")
    conn.executemany(
        "UPDATE items SET col = ? WHERE rowid = ?",
        [(board_column(stage), rowid) for rowid, stage in rows],
    )
    return True


def has_rooms_tools_column(conn: Conn) -> bool:
    """Whether ``conn``'s ``rooms`` table has ``tools`` (False for an older one, or none)."""
    return any(row[1] == "tools" for row in _rows(conn, "PRAGMA table_info(rooms)"))


def add_rooms_tools_column(conn: Conn) -> bool:
    """Add ``rooms.tools`` (no rules: ``[]``) to a ``rooms`` table written before it existed."""
    if "rooms" not in existing_tables(conn) or has_rooms_tools_column(conn):
        return False
    conn.execute("ALTER TABLE rooms ADD COLUMN tools TEXT NOT NULL DEFAULT '[]'")
    return True


def board_column(stage_json: str) -> str:
    """The ``col`` value for a stored stage: its board column, or ``""`` if it won't decode."""
    try:
        return column(_stage(stage_json)).value
    except (PipelineError, TypeError, ValueError):
        return ""


def item_row(project: str, item: Item) -> tuple[Any, ...]:
    """The ``items`` row for ``item``: :data:`ITEM_COLUMNS`, then ``col``."""
    stage_json, col = _stage_text(item.stage)
    return (
        project, item.number, item.kind.value, item.title, item.body,
        stage_json, _numbers_text(item.depends_on),
        item.epic, item.retries, _origin_text(item.origin),
        float(item.created_at), float(item.updated_at), col,
    )  # fmt: skip


def item_from_row(row: Any) -> Item:
    """Rebuild an :class:`Item` from an ``items`` row in :data:`ITEM_COLUMNS` order."""
    return Item(
        number=row[1], kind=_KINDS.get(row[2]) or ItemKind(row[2]), title=row[3], body=row[4],
        stage=_stage(row[5]), depends_on=_numbers(row[6]), epic=row[7], retries=row[8],
        origin=_origin(row[9]), created_at=row[10], updated_at=row[11],
    )  # fmt: skip


_KINDS = {kind.value: kind for kind in ItemKind}


# Stages, origins and dependency lists are frozen values that repeat across rows (most items
# share a handful of stages and origins), so each stored text is decoded once. A text that
# fails to decode raises every time: errors are not cached.


# The other way round too: equal stages, origins and dependency tuples (all made of strings
# and ints, compared with their class) have equal canonical texts, so each is encoded once.


@functools.lru_cache(maxsize=4096)
def _stage_text(stage: Stage) -> tuple[str, str]:
    """The stored ``stage`` text of ``stage`` and its board column (``col``)."""
    return canonical_json(_stage_dict(stage)), column(stage).value


@functools.lru_cache(maxsize=4096)
def _origin_text(origin: Origin) -> str:
    return canonical_json(origin.to_dict())


@functools.lru_cache(maxsize=4096)
def _numbers_text(numbers: tuple[int, ...]) -> str:
    return canonical_json(list(numbers))


@functools.lru_cache(maxsize=4096)
def _stage(text: str) -> Stage:
    return stage_from_dict(loads(text))


@functools.lru_cache(maxsize=4096)
def _origin(text: str) -> Origin:
    return Origin.from_dict(loads(text))


@functools.lru_cache(maxsize=4096)
def _numbers(text: str) -> tuple[int, ...]:
    return tuple(loads(text))


def last_number(conn: Conn, project: str) -> int:
    """The highest item number ``project`` ever issued (purged ones included), or 0."""
    rows = _rows(conn, "SELECT last FROM item_numbers WHERE project = ?", (project,))
    return int(rows[0][0]) if rows else 0


def read_item(conn: Conn, project: str, number: int) -> Item | None:
    """The item's current row, or None when it never existed or was purged."""
    query = f"SELECT {ITEM_COLUMNS} FROM items WHERE project = ? AND number = ?"
    rows = _rows(conn, query, (project, number))
    return item_from_row(rows[0]) if rows else None


def existing_tables(conn: Conn) -> set[str]:
    """The names of the tables in ``conn``'s main database."""
    return {row[0] for row in _rows(conn, "SELECT name FROM sqlite_master WHERE type = 'table'")}


def read_tables(conn: Conn) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every materialised table, in key order (a missing table reads empty).

    An ``items`` table of an older version (no ``col``) reads as :func:`add_board_column`
    would leave it, so ``audit verify`` (which never writes) can check a data dir that no
    daemon of this version opened yet.
    """
    out: dict[str, list[tuple[Any, ...]]] = {}
    present = existing_tables(conn)
    for table, key in MATERIALISED.items():
        rows = _rows(conn, f"SELECT * FROM {table} ORDER BY {key}") if table in present else []
        out[table] = [tuple(row) for row in rows]
    if "items" in present and not has_board_column(conn):  # older: read it as if migrated
        out["items"] = [(*row, board_column(row[5])) for row in out["items"]]
    if "projects" in present:
        out["projects"] = as_migrated(conn, out["projects"])
    if "rooms" in present and not has_rooms_tools_column(conn):
        out["rooms"] = [(*row, "[]") for row in out["rooms"]]
    return out


class ItemRows:
    """Where :func:`apply` reads and writes items (``items`` and ``item_numbers`` rows):
    straight to the tables, as an append does."""

    def get(self, conn: Conn, project: str, number: int) -> Item | None:
        return read_item(conn, project, number)

    def last(self, conn: Conn, project: str) -> int:
        return last_number(conn, project)

    def add(self, conn: Conn, project: str, item: Item) -> None:
        """A new item; its number becomes the project's last."""
        conn.execute(_INSERT_ITEM, item_row(project, item))
        conn.execute(_SET_LAST, (project, item.number))

    def put(self, conn: Conn, project: str, item: Item) -> None:
        """A changed item."""
        conn.execute(_UPDATE_ITEM, (*item_row(project, item)[2:], project, item.number))

    def flush(self, conn: Conn) -> None:
        """Write what is held back (nothing here); :func:`apply` calls it before any op that
        is not an item create or update."""


class BufferedItemRows(ItemRows):
    """Replay's :class:`ItemRows`: the items a run of creates and updates touches stay in
    memory, and each row is written once, at :meth:`flush`. Same tables as writing them
    through (the same rows reach them), a fraction of the statements."""

    def __init__(self) -> None:
        self._items: dict[tuple[str, int], Item] = {}
        self._new: set[tuple[str, int]] = set()
        self._last: dict[str, int] = {}

    def get(self, conn: Conn, project: str, number: int) -> Item | None:
        key = (project, number)
        item = self._items.get(key)
        if item is None:
            item = super().get(conn, project, number)
            if item is not None:
                self._items[key] = item
        return item

    def last(self, conn: Conn, project: str) -> int:
        if project not in self._last:
            self._last[project] = last_number(conn, project)
        return self._last[project]

    def add(self, conn: Conn, project: str, item: Item) -> None:
        key = (project, item.number)
        self._items[key] = item
        self._new.add(key)
        self._last[project] = item.number

    def put(self, conn: Conn, project: str, item: Item) -> None:
        self._items[(project, item.number)] = item

    def flush(self, conn: Conn) -> None:
        if not self._items:
            return
        added, changed = [], []
        for key, item in self._items.items():
            row = item_row(key[0], item)
            if key in self._new:
                added.append(row)
            else:
                changed.append((*row[2:], *key))
        conn.executemany(_INSERT_ITEM, added)
        conn.executemany(_UPDATE_ITEM, changed)
        conn.executemany(_SET_LAST, list(self._last.items()))
        self._items, self._new, self._last = {}, set(), {}


_INSERT_ITEM = f"INSERT INTO items ({ITEM_COLUMNS}, col) VALUES ({', '.join('?' * 13)})"
_UPDATE_ITEM = (
    "UPDATE items SET kind = ?, title = ?, body = ?, stage = ?, depends_on = ?, epic = ?,"
    " retries = ?, origin = ?, created_at = ?, updated_at = ?, col = ?"
    " WHERE project = ? AND number = ?"
)
_SET_LAST = (
    "INSERT INTO item_numbers (project, last) VALUES (?, ?)"
    " ON CONFLICT (project) DO UPDATE SET last = excluded.last"
)
ITEMS = ItemRows()
"""The write-through :class:`ItemRows` appends use."""


def apply(conn: Conn, op: SignedOp, items: ItemRows = ITEMS) -> Effects:
    """Apply ``op`` to the materialised tables; the caller owns the transaction.

    Guarantees: deterministic (same tables + same op → same tables); used verbatim by
    append and by replay (which passes a :class:`BufferedItemRows` and flushes it at the
    end). Refusals (unknown item, reused number, duplicate project or timer id, timer on a
    finished item) raise before the first statement that changes a row.

    Raises:
        PipelineError: the op is malformed or does not fit the current tables.
    """
    change = op.decode()
    match change:
        case CreateItem():
            return _create_item(conn, change, items)
        case UpdateItem():
            return _update_item(conn, change, op, items)
    items.flush(conn)
    match change:
        case CreateProject() | AddProject():
            return add_project(conn, change, op)
        case SetProject():
            return set_project(conn, change)
        case RemoveProject():
            return remove_project(conn, change)
        case PurgeItem():
            return _purge_item(conn, change)
        case AddTimer():
            return _add_timer(conn, change, op)
        case CancelTimer():
            rows = _rows(conn, "DELETE FROM timers WHERE id = ? RETURNING id", (change.id,))
            return ("timer",) if rows else ()
        case SetRoom():
            return _set_room(conn, change)
        case ClaimAgent() | AgentProgress() | EndAgent() | ClearAgent():
            item = read_item(conn, change.project, change.number)
            return apply_agent(conn, change, op.ts, None if item is None else item.stage)
        case TrustNode():  # and RevokeNode, its subclass
            return apply_node(conn, change, op.author, op.ts)


def _create_item(conn: Conn, change: CreateItem, items: ItemRows) -> Effects:
    number, last = change.item.number, items.last(conn, change.project)
    if number <= last:
        raise PipelineError(
            f"#{number} was already used in {change.project} (numbers are never reused;"
            f" the last was #{last})"
        )
    items.add(conn, change.project, change.item)
    return ()


def _delete_timers(conn: Conn, project: str, number: int) -> Effects:
    query = "DELETE FROM timers WHERE project = ? AND item = ? RETURNING id"
    gone = len(_rows(conn, query, (project, number)))
    return (f"{gone} timer{'s' * (gone != 1)}",) if gone else ()


def _update_item(conn: Conn, change: UpdateItem, op: SignedOp, items: ItemRows) -> Effects:
    item = items.get(conn, change.project, change.number)
    if item is None:
        raise PipelineError(f"no item #{change.number} in {change.project}")
    new = item.changed(**change.changes(), updated_at=op.ts)
    items.put(conn, change.project, new)
    if is_finished(new.stage):  # T1: timers die with their item
        return _delete_timers(conn, change.project, change.number)
    return ()


def _purge_item(conn: Conn, change: PurgeItem) -> Effects:
    if change.number > last_number(conn, change.project):
        raise PipelineError(f"no item #{change.number} in {change.project}")
    query = "DELETE FROM items WHERE project = ? AND number = ? RETURNING number"
    removed = _rows(conn, query, (change.project, change.number))
    timers = _delete_timers(conn, change.project, change.number)
    query = "DELETE FROM agent_runs WHERE project = ? AND item = ? RETURNING state"
    agent = _rows(conn, query, (change.project, change.number))
    return (("item row",) if removed else ()) + timers + (("agent state",) if agent else ())


def _add_timer(conn: Conn, change: AddTimer, op: SignedOp) -> Effects:
    if _rows(conn, "SELECT 1 FROM timers WHERE id = ?", (change.id,)):
        raise PipelineError(f"timer {change.id!r} already exists")
    if change.item is not None:
        item = read_item(conn, change.project, change.item)
        if item is None:
            raise PipelineError(f"no item #{change.item} in {change.project}")
        if is_finished(item.stage):
            raise PipelineError(f"#{change.item} is finished; it takes no timers")
    conn.execute(
        "INSERT INTO timers (id, project, item, fire_at, action, origin, created_at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?)",
        (change.id, change.project, change.item, float(change.fire_at),
         canonical_json(dict(change.action)), op.origin, op.ts),
    )  # fmt: skip
    return ()


def _set_room(conn: Conn, change: SetRoom) -> Effects:
    conn.execute(
        "INSERT INTO rooms (session) VALUES (?) ON CONFLICT (session) DO NOTHING",
        (change.session,),
    )
    if change.project is not KEEP:
        query = "UPDATE rooms SET project = ? WHERE session = ?"
        conn.execute(query, (change.project, change.session))
    if change.ambient is not KEEP:
        query = "UPDATE rooms SET ambient = ? WHERE session = ?"
        conn.execute(query, (int(change.ambient), change.session))
    if change.tools is not KEEP:
        query = "UPDATE rooms SET tools = ? WHERE session = ?"
        conn.execute(query, (canonical_json(list(change.tools)), change.session))
    return ()
