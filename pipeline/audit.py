"""``musher audit verify``: check every op's signature and order, then replay the log.

Replay follows insertion order (``rowid``), never sequence numbers (S1), into a fresh
in-memory database through the same :func:`pipeline.materialise.apply` the store uses, and
the rebuilt tables must equal the live ones row for row, value for value and type for type.
A report names the first bad op (rowid, author, seq, kind, why) or the first differing row.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import math
import os
import sqlite3
from collections.abc import Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from pipeline.envelope import OP_COLUMNS, SignedOp, op_from_row
from pipeline.errors import PipelineError
from pipeline.keys import NodeKey, verify_signature
from pipeline.materialise import (
    MATERIALISED,
    BufferedItemRows,
    apply,
    create_tables,
    existing_tables,
    read_tables,
)
from pipeline.node_ops import RevokeNode, TrustNode, TrustWalk
from pipeline.storage import Conn, SnapshotStorage, Storage, hold_appends

_PARALLEL_FROM = 2_000


@dataclass(frozen=True, slots=True)
class BadOp:
    """The first op that failed a check; ``reason`` says which."""

    rowid: int
    author: object
    seq: object
    kind: object
    reason: str

    def __str__(self) -> str:
        if self.author is None and self.kind is None:  # an op that is missing altogether
            return f"op {self.rowid}: {self.reason}"
        author = self.author[:16] + "…" if isinstance(self.author, str) else repr(self.author)
        return f"op {self.rowid} (author {author}, seq {self.seq}, {self.kind}): {self.reason}"


@dataclass(frozen=True, slots=True)
class RowMismatch:
    """The first materialised row that differs from replay (None: the row is missing)."""

    table: str
    key: tuple[Any, ...]
    live: tuple[Any, ...] | None
    replayed: tuple[Any, ...] | None

    def __str__(self) -> str:
        return (
            f"table {self.table} row {self.key!r} differs from the replay of the log:"
            f" live {self.live!r}, replayed {self.replayed!r}"
        )


@dataclass(frozen=True, slots=True)
class AuditReport:
    """The outcome of :func:`verify`: ``ok`` when ``problem`` is None."""

    ops: int
    authors: int
    problem: BadOp | RowMismatch | None

    @property
    def ok(self) -> bool:
        return self.problem is None

    def __str__(self) -> str:
        if self.problem is None:
            return (
                f"ok: {self.ops} ops by {self.authors} author(s) verified;"
                " replay reproduces every materialised table"
            )
        return f"FAILED after checking {self.ops} ops: {self.problem}"


class OpLogError(PipelineError):
    """The op log failed verification; ``problem`` names the first bad op or row."""

    def __init__(self, problem: BadOp | RowMismatch) -> None:
        super().__init__(f"the op log failed verification: {problem}")
        self.problem = problem


def _bad(op: SignedOp, reason: str) -> BadOp:
    return BadOp(op.rowid or 0, op.author, op.seq, op.kind, reason)


def _first_bad_signature(ops: Sequence[SignedOp], key: NodeKey | None = None) -> BadOp | None:
    own = None if key is None else key.public_hex
    for op in ops:
        try:
            message = op.signed_message()
        except PipelineError as exc:
            return _bad(op, f"malformed op: {exc}")
        if op.author == own and key is not None and key.signed(message, op.sig):
            continue
        reason = verify_signature(op.author, message, op.sig)
        if reason is not None:
            return _bad(op, reason)
    return None


@dataclass(slots=True)
class Progress:
    """What checking a log page by page carries over: the last rowid and each author's seq."""

    last_rowid: int = 0
    last_seq: dict[object, int] = field(default_factory=dict)


def _first_bad_shape(ops: Sequence[SignedOp], progress: Progress) -> tuple[int, BadOp] | None:
    """Rowids without gaps, seq rising per author (in rowid order), finite time."""
    for index, op in enumerate(ops):
        expected, rowid = progress.last_rowid + 1, op.rowid or 0
        if rowid != expected:
            return index, _bad(op, f"ops {expected}..{rowid - 1} are missing (deleted)")
        progress.last_rowid = rowid
        seq = op.seq
        if isinstance(seq, bool) or not isinstance(seq, int) or seq < 1:
            return index, _bad(op, f"bad seq {seq!r}")
        previous = progress.last_seq.get(op.author)
        if previous is not None and seq <= previous:
            reason = f"seq {seq} after seq {previous} of the same author (reordered or replayed)"
            return index, _bad(op, reason)
        progress.last_seq[op.author] = seq
        if not isinstance(op.ts, float) or not math.isfinite(op.ts):
            return index, _bad(op, f"bad time {op.ts!r}")
    return None


async def check_ops(
    ops: Sequence[SignedOp],
    progress: Progress,
    *,
    signed_after: int = 0,
    key: NodeKey | None = None,
) -> BadOp | None:
    """The first op (in the given rowid order) that fails a per-op check.

    Checks: each signature by the op's own author key over all its fields (only for rowids
    above ``signed_after``), rowids without gaps, seq strictly rising per author, finite
    time; at one rowid a bad signature is reported first. Payloads are checked by replay.
    Signatures are checked in worker threads (libsodium releases the GIL); those of ops by
    ``key`` (this node's own) by signing again (:meth:`NodeKey.signed`), which is cheaper.
    ``progress`` carries over between pages of one log.
    """
    shape = await asyncio.to_thread(_first_bad_shape, ops, progress)
    head = ops if shape is None else ops[: shape[0] + 1]
    if signed_after:
        head = [op for op in head if (op.rowid or 0) > signed_after]
    workers = min(os.cpu_count() or 1, 4) if len(head) >= _PARALLEL_FROM else 1
    size = max(1, -(-len(head) // workers))
    chunks = [head[start : start + size] for start in range(0, len(head), size)]
    found = await asyncio.gather(
        *(asyncio.to_thread(_first_bad_signature, chunk, key) for chunk in chunks)
    )
    for bad in found:
        if bad is not None:
            return bad
    return None if shape is None else shape[1]


_pauses = 0
"""How many :func:`collections_paused` blocks are open (verify and replay may overlap)."""
_resume = False
"""Whether the collector ran before the outermost open pause began."""


@contextlib.contextmanager
def collections_paused() -> Iterator[None]:
    """The cycle collector paused while a whole log is loaded and checked: that makes one
    object per op, all of which stay alive, and on a daemon's heap each collection the work
    triggers walks every one of them (a third of the load time at 100,000 ops, and a 300 ms
    stall of every other thread during verify's replay). Reference counting still frees
    everything else. Blocks may nest or overlap; the collector resumes (if it ran before)
    when the last one ends."""
    global _pauses, _resume
    if _pauses == 0:
        _resume = gc.isenabled()
        gc.disable()
    _pauses += 1
    try:
        yield
    finally:
        _pauses -= 1
        if _pauses == 0 and _resume:
            gc.enable()


def truncation(progress: Progress, issued: int) -> BadOp | None:
    """``issued`` is the highest rowid the log ever handed out (``sqlite_sequence``)."""
    if issued <= progress.last_rowid:
        return None
    missing = f"ops {progress.last_rowid + 1}..{issued} are missing"
    return BadOp(progress.last_rowid + 1, None, None, None, f"the log was truncated: {missing}")


ISSUED = "SELECT seq FROM sqlite_sequence WHERE name = 'ops'"
"""The highest rowid ``ops`` ever handed out (AUTOINCREMENT), deleted tail included."""


def replay(conn: Conn, ops: Iterable[SignedOp]) -> BadOp | None:
    """Apply ``ops`` in the given (rowid) order; the first op apply refuses, or None."""
    items = BufferedItemRows()
    for op in ops:
        try:
            apply(conn, op, items)
        except PipelineError as exc:
            return _bad(op, f"replay refused it: {exc}")
    items.flush(conn)
    return None


async def replay_into(source: Storage, scratch: Storage) -> int:
    """Rebuild the materialised tables of ``source`` in ``scratch`` (one transaction).

    ``scratch`` should be empty; it gets the full schema, an empty ``ops`` table, and the
    tables as replaying ``source``'s log in rowid order makes them. Returns the op count.

    Raises:
        OpLogError: an op was refused by replay (nothing is committed to ``scratch``).
    """
    with collections_paused():
        rows = await source.read(f"SELECT {OP_COLUMNS} FROM ops ORDER BY rowid")
        ops = [op_from_row(row) for row in rows]

    def rebuild(conn: Conn) -> None:
        create_tables(conn)
        bad = replay(conn, ops)
        if bad is not None:
            raise OpLogError(bad)

    await scratch.write(rebuild)
    return len(ops)


def _typed(row: tuple[Any, ...]) -> tuple[tuple[str, Any], ...]:
    return tuple((type(value).__name__, value) for value in row)


def _order(key: tuple[Any, ...]) -> tuple[tuple[int, Any], ...]:
    """SQLite's order for key values: NULL, numbers, text (by UTF-8 bytes), blobs."""
    ranks = {type(None): 0, int: 1, float: 1, str: 2, bytes: 3}
    return tuple((ranks.get(type(value), 4), value) for value in key)


def _first_difference(
    table: str, width: int, live: list[tuple[Any, ...]], replayed: list[tuple[Any, ...]]
) -> RowMismatch | None:
    i = j = 0
    while i < len(live) or j < len(replayed):
        a = live[i] if i < len(live) else None
        b = replayed[j] if j < len(replayed) else None
        if a is not None and b is not None and a[:width] == b[:width]:
            if _typed(a) != _typed(b):
                return RowMismatch(table, a[:width], a, b)
            i, j = i + 1, j + 1
        elif b is None or (a is not None and _order(a[:width]) < _order(b[:width])):
            assert a is not None
            return RowMismatch(table, a[:width], a, None)
        else:
            return RowMismatch(table, b[:width], None, b)
    return None


def compare_tables(
    live: dict[str, list[tuple[Any, ...]]], replayed: dict[str, list[tuple[Any, ...]]]
) -> RowMismatch | None:
    """The first row (tables in :data:`MATERIALISED` order, rows by key) that differs.

    Rows are matched by key, so one extra or missing row is reported as itself (``live`` or
    ``replayed`` None) rather than as a shift of every row after it.
    """
    for table, key in MATERIALISED.items():
        width = key.count(",") + 1
        found = _first_difference(table, width, live.get(table, []), replayed.get(table, []))
        if found is not None:
            return found
    return None


def _replay_and_compare(
    ops: Sequence[SignedOp], live: dict[str, list[tuple[Any, ...]]]
) -> BadOp | RowMismatch | None:
    """Replay into a private in-memory database and compare it with ``live``."""
    scratch = sqlite3.connect(":memory:", isolation_level=None)
    try:
        create_tables(scratch)
        scratch.execute("BEGIN")
        return replay(scratch, ops) or compare_tables(live, read_tables(scratch))
    finally:
        scratch.close()


def _read_all(conn: Conn) -> tuple[list[Any], int, dict[str, list[tuple[Any, ...]]]]:
    """The log in rowid order, the highest rowid ever issued, and every materialised table."""
    hold_appends(conn, "ops")  # in a write transaction: no other node appends until it is read
    present = existing_tables(conn)  # a data dir without a log reads as an empty one
    rows, issued = [], []
    if "ops" in present:
        rows = conn.execute(f"SELECT {OP_COLUMNS} FROM ops ORDER BY rowid").fetchall()
    if "sqlite_sequence" in present:
        issued = conn.execute(ISSUED).fetchall()
    return rows, int(issued[0][0]) if issued else 0, read_tables(conn)


def first_untrusted(ops: Iterable[SignedOp], roots: Collection[str]) -> BadOp | None:
    """The first op (in rowid order) whose author was not trusted when it was written
    (:class:`pipeline.node_ops.TrustWalk`; ``roots`` besides the founder)."""
    walk = TrustWalk(set(roots))
    for op in ops:
        change: object = None
        if op.kind in (TrustNode.KIND, RevokeNode.KIND):
            with contextlib.suppress(PipelineError):  # replay reports a malformed payload
                change = op.decode()
        reason = walk.check(op.author, change)
        if reason is not None:
            return _bad(op, reason)
    return None


async def verify(
    storage: Storage, trusted: Collection[str] | None = None, key: NodeKey | None = None
) -> AuditReport:
    """Check every signature and replay the log against the live tables (S2, R5).

    Reads the log and the tables from one consistent snapshot: a read transaction of its own
    on a :class:`~pipeline.storage.SnapshotStorage` (writes go on meanwhile), else a write
    transaction. Then checks each op's signature, seq and time (signatures in worker
    threads), and only then replays the log into a private in-memory database (which decodes
    and checks every payload) and compares: one after the other, as replay side by side
    with the signature threads only makes both wait for the GIL. A per-op problem is
    reported before a replay one. Never writes; safe on a running daemon; a database without
    a log reads as an empty log. A cancel leaves nothing behind. Given ``trusted`` (``[store]
    trusted_keys`` and the checking node's own key, as ``musher audit verify`` passes them),
    an op by a key that was not trusted when it was written
    (:class:`pipeline.node_ops.TrustWalk`: those, the founder, and keys trusted by
    ``node.trust`` ops) is a per-op problem; None checks the log's integrity only. ``key``,
    the checking node's own, makes checking its own ops' signatures cheaper (same verdict).
    """
    with collections_paused():
        return await _verify(storage, trusted, key)


async def _verify(
    storage: Storage, trusted: Collection[str] | None, key: NodeKey | None
) -> AuditReport:
    """:func:`verify`'s work; the log it loads is freed when this returns."""
    read = storage.snapshot if isinstance(storage, SnapshotStorage) else storage.write
    rows, issued, live = await read(_read_all)
    ops = [op_from_row(row) for row in rows]
    del rows
    authors = len({op.author for op in ops})
    progress = Progress()
    problem: BadOp | RowMismatch | None = (
        await check_ops(ops, progress, key=key)
        or truncation(progress, issued)
        or (None if trusted is None else first_untrusted(ops, trusted))
    )
    if problem is None:
        problem = await asyncio.to_thread(_replay_and_compare, ops, live)
    return AuditReport(len(ops), authors, problem)
