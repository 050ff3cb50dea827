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
from pipeline.materialise import MATERIALISED, SCHEMA_STATEMENTS, apply, read_tables
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


def _first_bad_shape(ops: Iterable[SignedOp], last_seq: dict[object, int]) -> BadOp | None:
    """Seq order per author (rowid order), time, payload and origin; updates ``last_seq``."""
    for op in ops:
        seq = op.seq
        if isinstance(seq, bool) or not isinstance(seq, int) or seq < 1:
            return _bad(op, f"bad seq {seq!r}")
        previous = last_seq.get(op.author)
        if previous is not None and seq <= previous:
            return _bad(op, f"seq {seq} after seq {previous} of the same author (reordered"
                            " or replayed op)")  # fmt: skip
        last_seq[op.author] = seq
        if not isinstance(op.ts, float) or not math.isfinite(op.ts):
            return _bad(op, f"bad time {op.ts!r}")
        try:
            op.decode()
            op.decode_origin()
        except PipelineError as exc:
            return _bad(op, f"malformed op: {exc}")
    return None


async def check_ops(ops: Sequence[SignedOp], last_seq: dict[object, int]) -> BadOp | None:
    """The first op (rowid order) with a bad signature, seq order, time, payload or origin.

    Signatures are checked in worker threads (libsodium releases the GIL); at one rowid a
    bad signature is reported before any other fault. ``last_seq`` carries each author's
    last seq across calls, so a log can be checked page by page.
    """
    shape = await asyncio.to_thread(_first_bad_shape, ops, last_seq)
    end = len(ops) if shape is None else next(i for i, op in enumerate(ops) if op is shape_op(shape, ops))
    head = ops[: end + 1] if shape is not None else ops
    workers = max(1, min(os.cpu_count() or 1, 4)) if len(head) >= _PARALLEL_FROM else 1
    size = -(-len(head) // workers) if head else 1
    chunks = [head[i : i + size] for i in range(0, len(head), size)]
    for found in await asyncio.gather(*(asyncio.to_thread(_first_bad_signature, c) for c in chunks)):
        if found is not None:
            return found
    return shape


def shape_op(bad: BadOp, ops: Sequence[SignedOp]) -> SignedOp:
    return next(op for op in ops if op.rowid == bad.rowid)
