"""The store: a signed, append-only op log and the tables materialised from it (S1–S5, P5).

Every change is an op in the ``ops`` table, signed by this node's key, written in the same
transaction as its effect on the materialised tables (``projects``, ``items``,
``item_numbers``, ``timers``, ``rooms``). Nothing else writes those tables and every read
here comes from them alone (S3). An op is returned to its caller only after its transaction
committed with ``synchronous=FULL`` (S4). ``ops`` refuses UPDATE and DELETE by trigger.
A failed write raises :class:`StoreWriteError`, a log that fails its check at open
:class:`~pipeline.audit.OpLogError` (both pipeline errors).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from pipeline import log_check
from pipeline.agent_rows import RUN_COLUMNS, AgentRun, run_from_row
from pipeline.board import BoardView, board_order
from pipeline.canonical import canonical_json, loads
from pipeline.crashpoints import crash_after
from pipeline.envelope import OP_COLUMNS, SignedOp, op_from_row, origin_json, seal
from pipeline.errors import PipelineError
from pipeline.keys import NodeKey
from pipeline.materialise import (
    ITEM_COLUMNS,
    SCHEMA,
    Effects,
    apply,
    create_tables,
    item_from_row,
    last_number,
)
from pipeline.model import Backlog, Column, Item, ItemKind, Origin, Stage
from pipeline.node_ops import is_trusted, untrusted
from pipeline.ops import CHANGES, Change, CreateItem
from pipeline.project_rows import PROJECT_COLUMNS
from pipeline.storage import Conn, Storage, insert_id, notify

__all__ = ["OPS_CHANNEL", "SCHEMA", "AppliedOp", "OpStore", "StoreWriteError"]

T = TypeVar("T")


class StoreWriteError(PipelineError):
    """The op could not be committed; nothing of it was recorded. Tell the caller and room."""


@dataclass(frozen=True, slots=True)
class AppliedOp:
    """An op that is committed: its stored form, the change, and what it cleared."""

    op: SignedOp
    change: Change
    effects: Effects

    @property
    def seq(self) -> int:
        return self.op.seq

    @property
    def rowid(self) -> int:
        assert self.op.rowid is not None
        return self.op.rowid


@dataclass(frozen=True, slots=True)
class ProjectRecord:
    """A registered project (``project.add``, changed by ``project.set``)."""

    name: str
    path: str
    base_branch: str
    timezone: str
    origin: Origin
    created_at: float
    stack: str = "generic"
    sandbox: str = "none"
    remote: str | None = None
    qa: str = "human"
    gates: tuple[tuple[str, ...], ...] = ()


@dataclass(frozen=True, slots=True)
class TimerRecord:
    """A pending timer row (T1); ``action`` is the JSON object given to ``timer.add``."""

    id: str
    project: str
    item: int | None
    fire_at: float
    action: dict[str, Any]
    origin: Origin
    created_at: float


@dataclass(frozen=True, slots=True)
class RoomRecord:
    """A session's settings: its active project (or None), whether it is ambient, and the
    tool uses it allows without asking (L7)."""

    session: str
    project: str | None
    ambient: bool
    tools: tuple[str, ...] = ()


_INSERT_OP = (
    "INSERT INTO ops (project, item, kind, payload, origin, author, seq, ts, sig)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
OPS_CHANNEL = "musher_ops"
"""The PostgreSQL channel every op append notifies with its insertion id (at commit)."""
_TIMER_COLUMNS = "id, project, item, fire_at, action, origin, created_at"
_BACKLOG = Backlog()


_NULLS = ", ".join(["NULL"] * len(ITEM_COLUMNS.split(",")))
_COLUMNS = {col.value: col for col in Column}


def _board_query(columns: Sequence[Column], newest_first: Collection[Column]) -> str:
    """One statement (so one snapshot) for :meth:`OpStore.board_view`; parameters: project,
    per_column, then each of ``columns``. Rows are ``(part, col, n, *ITEM_COLUMNS)``:
    ``count`` (``n`` live items in ``col``), ``item`` (a listed item of ``col``) and ``dep``
    (item ``n``, which a listed item depends on, is in ``col``). Each listed column is read
    from the ``items_by_column`` index, ``per_column`` rows at most; no other row is decoded.
    """
    heads = [
        f"SELECT * FROM (SELECT {ITEM_COLUMNS}, col FROM items WHERE project = ?1"
        f" AND col = ?{i + 3} ORDER BY number {'DESC' if col in newest_first else 'ASC'}"
        f" LIMIT ?2) AS head{i}"
        for i, col in enumerate(columns)
    ] or [f"SELECT {ITEM_COLUMNS}, col FROM items WHERE 1 = 0"]
    return (
        f"WITH listed AS ({' UNION ALL '.join(heads)})"
        f" SELECT 'count', col, COUNT(*), {_NULLS} FROM items WHERE project = ?1 GROUP BY col"
        f" UNION ALL SELECT 'item', col, NULL, {ITEM_COLUMNS} FROM listed"
        f" UNION ALL SELECT 'dep', col, number, {_NULLS} FROM (SELECT DISTINCT value AS n"
        "  FROM listed, json_each(listed.depends_on)) AS deps"
        "  CROSS JOIN items WHERE project = ?1 AND number = deps.n"  # one key lookup each
    )


def _board_from_rows(
    rows: Iterable[Any], columns: Sequence[Column], newest_first: Collection[Column]
) -> BoardView:
    """Assemble :func:`_board_query`'s rows; a ``col`` that is no column (a row whose stage
    no longer decodes, see :func:`pipeline.materialise.add_board_column`) is left out."""
    counts: dict[Column, int] = {}
    listed: dict[Column, list[Item]] = {}
    dep_columns: dict[int, Column] = {}
    for row in rows:
        part, col = row[0], _COLUMNS.get(row[1])
        if col is None:
            continue
        if part == "count":
            counts[col] = row[2]
        elif part == "item":
            listed.setdefault(col, []).append(item_from_row(tuple(row)[3:]))
        else:
            dep_columns[row[2]] = col
    in_order = {
        col: tuple(board_order(listed[col], col in newest_first))
        for col in columns
        if col in listed
    }
    return BoardView(counts, in_order, dep_columns)


def _timer_from_row(r: Any) -> TimerRecord:
    return TimerRecord(
        id=r[0], project=r[1], item=r[2], fire_at=r[3], action=loads(r[4]),
        origin=Origin.from_dict(loads(r[5])), created_at=r[6],
    )  # fmt: skip


_CHANGE_TYPES = tuple(CHANGES.values())


class OpStore:
    """The op log of one database, writing as one node key. Build with :meth:`open`.

    Concurrent appends are safe and share commits through the storage's group commit; one
    node's seqs rise in rowid order because seqs are assigned inside the write transaction.
    """

    def __init__(
        self,
        storage: Storage,
        key: NodeKey,
        next_seq: int,
        clock: Callable[[], float],
        roots: Collection[str] = (),
    ) -> None:
        self._storage = storage
        self._key = key
        self._next_seq = next_seq
        self._clock = clock
        self._roots = frozenset(roots)

    @classmethod
    async def open(
        cls,
        storage: Storage,
        key: NodeKey,
        *,
        clock: Callable[[], float] = time.time,
        trusted: Collection[str] = (),
        self_trusted: bool = True,
    ) -> OpStore:
        """Create the tables if missing (migrating an older ``items`` table: see
        :func:`pipeline.materialise.add_board_column`), check the log, and resume this key's
        seq.

        Every op's signature (by its own author key), rowid continuity and per-author seq
        order is checked (:func:`pipeline.log_check.check_log`; ops this key already
        verified at its last open are re-hashed, not re-verified). The full replay is
        :func:`pipeline.audit.verify`. The next seq is ``max(own seq) + 1``, read once here
        (1 for a new key), so a restart never reuses or restarts a sequence (lesson 511).

        ``trusted`` (``[store] trusted_keys``) and, when ``self_trusted`` (a daemon: its
        own key is always trusted), this key are the roots of trust: an append by a key
        that is no root, not the log's founder and not trusted by a ``node.trust`` op is
        refused (:class:`~pipeline.node_ops.UntrustedKeyError`, see
        :mod:`pipeline.node_ops`). A build agent opens with ``self_trusted=False``.

        Raises:
            OpLogError: an op failed the check; the daemon must not start on this log.
            StoreWriteError: the schema or the checkpoint could not be written.
        """
        roots = {*trusted, *([key.public_hex] if self_trusted else [])}
        store = cls(storage, key, 1, clock, roots)

        await store._submit(create_tables)
        await store._submit((await log_check.check_log(storage, key)).save)
        rows = await storage.read("SELECT MAX(seq) FROM ops WHERE author = ?", (key.public_hex,))
        store._next_seq = int(rows[0][0] or 0) + 1
        return store

    @property
    def author(self) -> str:
        """This node's public key (hex): the ``author`` of every op it writes."""
        return self._key.public_hex

    @property
    def next_seq(self) -> int:
        """The seq the next op of this node will get (gaps follow failed writes)."""
        return self._next_seq

    # --- writing --------------------------------------------------------------------------

    async def append(self, change: Change, origin: Origin) -> AppliedOp:
        """Record ``change`` by ``origin`` and apply it, atomically. See :meth:`append_many`."""
        return (await self.append_many([change], origin))[0]

    async def append_many(
        self,
        changes: Sequence[Change],
        origin: Origin,
        check: Callable[[Conn], None] | None = None,
    ) -> list[AppliedOp]:
        """Record ``changes`` (in order) and apply them, all in one transaction.

        ``check(conn)`` runs first in that transaction (a guard of :mod:`pipeline.claims`):
        if it raises, nothing is written and its error comes back as it is.

        Guarantees: returns only after the commit is durable (S4); either every op and its
        effects are recorded or none is. Origin and payloads are checked before anything is
        written. If the caller is cancelled after the write was queued, the write may still
        commit; the caller just does not hear of it (re-read the tables to find out).

        Raises:
            PipelineError: a change is malformed, unattributed, or does not fit the current
                tables (unknown item, reused number, …); nothing was written.
            StoreWriteError: the commit failed; nothing was written.
        """
        origin_text = origin_json(origin)
        for change in changes:
            if not isinstance(change, _CHANGE_TYPES):
                raise PipelineError(f"not a change: {change!r}")
        payloads = [canonical_json(change.to_payload()) for change in changes]

        def write_all(conn: Conn, ts: float) -> list[AppliedOp]:
            return [
                self._write(conn, change, payload, origin_text, ts)
                for change, payload in zip(changes, payloads, strict=True)
            ]

        def job(conn: Conn) -> list[AppliedOp]:
            if check is not None:
                check(conn)
            return write_all(conn, float(self._clock()))

        return await self._submit(crash_after(job, "mid-op-commit")) if changes else []

    async def create_item(
        self,
        project: str,
        origin: Origin,
        *,
        kind: ItemKind,
        title: str,
        body: str = "",
        stage: Stage = _BACKLOG,
        depends_on: tuple[int, ...] = (),
        epic: int | None = None,
    ) -> Item:
        """Create an item numbered ``last + 1`` of ``project``, chosen inside the transaction.

        Guarantees: concurrent creations get distinct numbers, and a number is never reused,
        purged numbers included (P5). Same atomicity and errors as :meth:`append_many`.
        """
        origin_text = origin_json(origin)

        def write(conn: Conn, ts: float) -> Item:
            item = Item(
                number=last_number(conn, project) + 1, kind=kind, title=title, body=body,
                stage=stage, depends_on=depends_on, epic=epic, origin=origin, created_at=ts,
                updated_at=ts,
            )  # fmt: skip
            change = CreateItem(project, item)
            self._write(conn, change, canonical_json(change.to_payload()), origin_text, ts)
            return item

        def job(conn: Conn) -> Item:
            return write(conn, float(self._clock()))

        return await self._submit(crash_after(job, "mid-op-commit"))

    def _write(self, conn: Conn, change: Change, payload: str, origin: str, ts: float) -> AppliedOp:
        """Sign, insert and apply one op; runs on the writer's thread inside its transaction."""
        if not is_trusted(conn, self._key.public_hex, self._roots):
            raise untrusted(self._key.public_hex)
        op = seal(change, payload, origin, self._key, self._next_seq, ts)
        self._next_seq += 1  # a rolled-back op leaves a gap; gaps are allowed, reuse is not
        rowid = insert_id(conn, _INSERT_OP, (
            op.project, op.item, op.kind, op.payload, op.origin, op.author, op.seq, op.ts,
            op.sig,
        ), "rowid")  # fmt: skip
        assert rowid is not None  # no conflict clause: a failed insert raises
        op = op.stored_as(rowid)
        notify(conn, OPS_CHANNEL, str(op.rowid))  # other daemons' bus: see bot.cluster_bus
        return AppliedOp(op, change, apply(conn, op))

    async def _submit(self, job: Callable[[Conn], T]) -> T:
        """Run ``job`` through the storage; a refusal comes back as itself, not wrapped."""
        refused: list[PipelineError] = []

        def guarded(conn: Conn) -> T:
            refused.clear()
            try:
                return job(conn)
            except PipelineError as exc:
                refused.append(exc)
                raise

        try:
            return await self._storage.write(guarded)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if refused:
                raise refused[0] from exc
            raise StoreWriteError(f"the op log write failed; nothing was recorded: {exc}") from exc

    # --- reading (materialised tables only, S3) -------------------------------------------

    async def items(self, project: str) -> list[Item]:
        """Every live item of ``project``, by number (purged items are gone)."""
        query = f"SELECT {ITEM_COLUMNS} FROM items WHERE project = ? ORDER BY number"
        return [item_from_row(row) for row in await self._storage.read(query, (project,))]

    async def items_numbered(self, project: str, numbers: Iterable[int]) -> list[Item]:
        """The live items of ``project`` among ``numbers``, by number (others are left out)."""
        query = (
            f"SELECT {ITEM_COLUMNS} FROM items WHERE project = ?"
            " AND number IN (SELECT value FROM json_each(?)) ORDER BY number"
        )
        wanted = canonical_json(sorted(set(numbers)))
        return [item_from_row(row) for row in await self._storage.read(query, (project, wanted))]

    async def board_view(
        self,
        project: str,
        columns: Sequence[Column],
        per_column: int,
        newest_first: Collection[Column] = (),
    ) -> BoardView:
        """What ``status`` shows of ``project``: equal to :func:`pipeline.board.board_view`
        of :meth:`items`, read in one statement that decodes only the listed items."""
        if per_column < 1:
            raise ValueError(f"per_column must be at least 1, got {per_column}")
        query = _board_query(columns, newest_first)
        params = (project, per_column, *(col.value for col in columns))
        return _board_from_rows(await self._storage.read(query, params), columns, newest_first)

    async def item(self, project: str, number: int) -> Item | None:
        """Item ``number`` of ``project``, or None if it never existed or was purged."""
        query = f"SELECT {ITEM_COLUMNS} FROM items WHERE project = ? AND number = ?"
        rows = await self._storage.read(query, (project, number))
        return item_from_row(rows[0]) if rows else None

    async def next_number(self, project: str) -> int:
        """The number the next item of ``project`` would get (a hint: see create_item)."""
        rows = await self._storage.read(
            "SELECT last FROM item_numbers WHERE project = ?", (project,)
        )
        return (int(rows[0][0]) if rows else 0) + 1

    async def timers(self, project: str | None = None) -> list[TimerRecord]:
        """Pending timers (of ``project``, or all), soonest first."""
        where, params = ("WHERE project = ?", (project,)) if project is not None else ("", ())
        rows = await self._storage.read(
            f"SELECT {_TIMER_COLUMNS} FROM timers {where} ORDER BY fire_at, id", params
        )
        return [_timer_from_row(row) for row in rows]

    async def rooms(self) -> list[RoomRecord]:
        """Every session with settings, by session."""
        rows = await self._storage.read(
            "SELECT session, project, ambient, tools FROM rooms ORDER BY session"
        )
        return [_room(r) for r in rows]

    async def room(self, session: str) -> RoomRecord | None:
        """The settings of ``session``, or None if none were ever set."""
        rows = await self._storage.read(
            "SELECT session, project, ambient, tools FROM rooms WHERE session = ?", (session,)
        )
        return _room(rows[0]) if rows else None

    async def projects(self) -> list[ProjectRecord]:
        """Every registered project, by name."""
        rows = await self._storage.read(f"SELECT {PROJECT_COLUMNS} FROM projects ORDER BY name")
        return [_project(r) for r in rows]

    @staticmethod
    def room_project_in(conn: Conn, session: str, default: str | None) -> ProjectRecord | None:
        """Inside a write job: the record of ``session``'s project (its ``switch``, else
        ``default``), read in the job's own transaction; None when there is none."""
        rows = conn.execute("SELECT project FROM rooms WHERE session = ?", (session,)).fetchall()
        name = rows[0][0] if rows and rows[0][0] is not None else default
        if name is None:
            return None
        query = f"SELECT {PROJECT_COLUMNS} FROM projects WHERE name = ?"
        found = conn.execute(query, (name,)).fetchall()
        return _project(found[0]) if found else None

    async def agent_runs(self, project: str | None = None) -> list[AgentRun]:
        """Every item's agent execution state (of ``project``, or of all), by item."""
        where, params = ("WHERE project = ?", (project,)) if project is not None else ("", ())
        query = f"SELECT {RUN_COLUMNS} FROM agent_runs {where} ORDER BY project, item"
        return [run_from_row(row) for row in await self._storage.read(query, params)]

    async def agent_run(self, project: str, number: int) -> AgentRun | None:
        """Item ``number``'s agent execution state, or None when it never had an agent."""
        query = f"SELECT {RUN_COLUMNS} FROM agent_runs WHERE project = ? AND item = ?"
        rows = await self._storage.read(query, (project, number))
        return run_from_row(rows[0]) if rows else None

    async def trusted_keys(self) -> set[str]:
        """The keys ``node.trust`` ops trusted and no ``node.revoke`` op revoked."""
        return {row[0] for row in await self._storage.read("SELECT key FROM trusted_keys")}

    async def item_ops(self, project: str, number: int) -> list[AppliedOp]:
        """Every op recorded against item ``number`` of ``project``, in log (rowid) order.

        Read from the ``ops`` table itself (the item's history, purged items included);
        ``effects`` is empty because only the original write knows what an op cleared.

        Raises:
            PipelineError: a stored op no longer decodes (the log was tampered with).
        """
        rows = await self._storage.read(
            f"SELECT {OP_COLUMNS} FROM ops WHERE project = ? AND item = ? ORDER BY rowid",
            (project, number),
        )
        return [AppliedOp(op, op.decode(), ()) for op in map(op_from_row, rows)]


def _project(r: Any) -> ProjectRecord:
    return ProjectRecord(
        r[0], r[1], r[2], r[3], Origin.from_dict(loads(r[4])), r[5], r[6], r[7], r[8], r[9],
        tuple(tuple(argv) for argv in loads(r[10])),
    )  # fmt: skip


def _room(row: Any) -> RoomRecord:
    return RoomRecord(row[0], row[1], bool(row[2]), tuple(loads(row[3])))
