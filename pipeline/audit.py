"""``musher audit verify``: check every op's signature and order, then replay the log.

Replay follows insertion order (``rowid``), never sequence numbers (S1), into a fresh
in-memory database through the same :func:`pipeline.materialise.apply` the store uses, and
the rebuilt tables must equal the live ones row for row, value for value and type for type.
A report names the first bad op (rowid, author, seq, kind, why) or the first differing row.
"""

from __future__ import annotations

import asyncio
import math
import os
import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import aiosqlite

from pipeline.envelope import SignedOp
from pipeline.keys import verify_signature
from pipeline.materialise import MATERIALISED, apply, create_tables, read_tables, run_on_writer
from pipeline.model import PipelineError

if TYPE_CHECKING:
    from pipeline.store import Storage

OP_COLUMNS = "rowid, project, item, kind, payload, origin, author, seq, ts, sig"
_PAGE = 20_000
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


def op_from_row(row: Any) -> SignedOp:
    """An op from a row of ``SELECT {OP_COLUMNS}``; values are taken as stored, unchecked."""
    r = tuple(row)
    return SignedOp(
        rowid=r[0], project=r[1], item=r[2], kind=r[3], payload=r[4], origin=r[5],
        author=r[6], seq=r[7], ts=r[8], sig=r[9],
    )  # fmt: skip


def _bad(op: SignedOp, reason: str) -> BadOp:
    return BadOp(op.rowid or 0, op.author, op.seq, op.kind, reason)


def _first_bad_signature(ops: Sequence[SignedOp]) -> BadOp | None:
    for op in ops:
        try:
            message = op.signed_message()
        except PipelineError as exc:
            return _bad(op, f"malformed op: {exc}")
        reason = verify_signature(op.author, message, op.sig)
        if reason is not None:
            return _bad(op, reason)
    return None


def _first_bad_shape(
    ops: Sequence[SignedOp], last_seq: dict[object, int], decode: bool
) -> tuple[int, BadOp] | None:
    """Seq order per author (rowid order), time, and if ``decode`` payload and origin."""
    for index, op in enumerate(ops):
        seq = op.seq
        if isinstance(seq, bool) or not isinstance(seq, int) or seq < 1:
            return index, _bad(op, f"bad seq {seq!r}")
        previous = last_seq.get(op.author)
        if previous is not None and seq <= previous:
            reason = f"seq {seq} after seq {previous} of the same author (reordered or replayed)"
            return index, _bad(op, reason)
        last_seq[op.author] = seq
        if not isinstance(op.ts, float) or not math.isfinite(op.ts):
            return index, _bad(op, f"bad time {op.ts!r}")
        if not decode:
            continue
        try:
            op.decode()
            op.decode_origin()
        except PipelineError as exc:
            return index, _bad(op, f"malformed op: {exc}")
    return None


async def check_ops(
    ops: Sequence[SignedOp], last_seq: dict[object, int], *, decode: bool = True
) -> BadOp | None:
    """The first op (in the given rowid order) that fails any per-op check.

    Checks: signature by the op's own author key over all its fields, seq strictly rising
    per author, finite time, and (``decode``) canonical, valid payload and origin. At one
    rowid a bad
    signature is reported before any other fault. Signatures are checked in worker threads
    (libsodium releases the GIL). ``last_seq`` carries each author's last seq across calls,
    so a long log can be checked page by page.
    """
    shape = await asyncio.to_thread(_first_bad_shape, ops, last_seq, decode)
    head = ops if shape is None else ops[: shape[0] + 1]
    workers = min(os.cpu_count() or 1, 4) if len(head) >= _PARALLEL_FROM else 1
    size = max(1, -(-len(head) // workers))
    chunks = [head[start : start + size] for start in range(0, len(head), size)]
    found = await asyncio.gather(*(asyncio.to_thread(_first_bad_signature, c) for c in chunks))
    for bad in found:
        if bad is not None:
            return bad
    return None if shape is None else shape[1]


async def check_log(storage: Storage) -> int:
    """The startup check: every op's signature and seq order, page by page; return the count.

    Payloads are not decoded here (a signed payload was decoded when it was appended);
    :func:`verify` does that and the full replay.

    Raises:
        OpLogError: naming the first op that fails :func:`check_ops`.
    """
    count, after, last_seq = 0, 0, dict[object, int]()
    while True:
        rows = await storage.read(
            f"SELECT {OP_COLUMNS} FROM ops WHERE rowid > ? ORDER BY rowid LIMIT ?",
            (after, _PAGE),
        )
        if not rows:
            return count
        ops = [op_from_row(row) for row in rows]
        bad = await check_ops(ops, last_seq, decode=False)
        if bad is not None:
            raise OpLogError(bad)
        count += len(ops)
        after = ops[-1].rowid or 0


def replay(conn: sqlite3.Connection, ops: Iterable[SignedOp]) -> BadOp | None:
    """Apply ``ops`` in the given (rowid) order; the first op apply refuses, or None."""
    for op in ops:
        try:
            apply(conn, op)
        except PipelineError as exc:
            return _bad(op, f"replay refused it: {exc}")
    return None


async def replay_into(source: Storage, scratch: Storage) -> int:
    """Rebuild the materialised tables of ``source`` in ``scratch`` (one transaction).

    ``scratch`` should be empty; it gets the full schema, an empty ``ops`` table, and the
    tables as replaying ``source``'s log in rowid order makes them. Returns the op count.

    Raises:
        OpLogError: an op was refused by replay (nothing is committed to ``scratch``).
    """
    rows = await source.read(f"SELECT {OP_COLUMNS} FROM ops ORDER BY rowid")
    ops = [op_from_row(row) for row in rows]

    def rebuild(conn: sqlite3.Connection) -> None:
        create_tables(conn)
        bad = replay(conn, ops)
        if bad is not None:
            raise OpLogError(bad)

    async def job(conn: aiosqlite.Connection) -> None:
        await run_on_writer(conn, rebuild)

    await scratch.write(job)
    return len(ops)


def _typed(row: tuple[Any, ...]) -> tuple[tuple[str, Any], ...]:
    return tuple((type(value).__name__, value) for value in row)


def compare_tables(
    live: dict[str, list[tuple[Any, ...]]], replayed: dict[str, list[tuple[Any, ...]]]
) -> RowMismatch | None:
    """The first row (tables in :data:`MATERIALISED` order, rows in key order) that differs."""
    for table, key in MATERIALISED.items():
        width = key.count(",") + 1
        ours, theirs = live.get(table, []), replayed.get(table, [])
        for index in range(max(len(ours), len(theirs))):
            a = ours[index] if index < len(ours) else None
            b = theirs[index] if index < len(theirs) else None
            if a is None or b is None or _typed(a) != _typed(b):
                row = a if a is not None else b
                assert row is not None
                return RowMismatch(table, row[:width], a, b)
    return None


def _replay_and_compare(
    ops: Sequence[SignedOp], live: dict[str, list[tuple[Any, ...]]]
) -> BadOp | RowMismatch | None:
    scratch = sqlite3.connect(":memory:", isolation_level=None)
    try:
        create_tables(scratch)
        scratch.execute("BEGIN")
        return replay(scratch, ops) or compare_tables(live, read_tables(scratch))
    finally:
        scratch.close()


async def verify(storage: Storage) -> AuditReport:
    """Check every signature and replay the log against the live tables (S2, R5).

    Reads the log and the tables in one transaction (a consistent snapshot that briefly holds
    the write lock), checks each op, replays into a private in-memory database in a worker
    thread and compares. Never writes; safe on a running daemon. A cancel leaves nothing.
    """

    def read_all(conn: sqlite3.Connection) -> tuple[list[Any], dict[str, list[tuple[Any, ...]]]]:
        rows = conn.execute(f"SELECT {OP_COLUMNS} FROM ops ORDER BY rowid").fetchall()
        return rows, read_tables(conn)

    async def snapshot(conn: aiosqlite.Connection) -> tuple[list[Any], Any]:
        return await run_on_writer(conn, read_all)

    rows, live = await storage.write(snapshot)
    ops = [op_from_row(row) for row in rows]
    authors = len({op.author for op in ops})
    problem: BadOp | RowMismatch | None = await check_ops(ops, {})
    if problem is None:
        problem = await asyncio.to_thread(_replay_and_compare, ops, live)
    return AuditReport(len(ops), authors, problem)
