"""The op log check the store runs at every open, and its keyed checkpoint (S2).

The verdict is always that of checking every op: signature by its author's key, rowids
without gaps or a cut tail, seq rising per author. To keep restarts fast, each successful
check leaves a *checkpoint*: the last rowid checked and a BLAKE2b MAC, keyed with this
node's secret, over every stored byte of the ops up to it. The next open re-hashes that
prefix (cheap) instead of re-verifying its signatures (~50 µs each) and verifies only the
newer ops. If the prefix changed in any way, or anything fails, the whole log is checked
again from the start, so the checkpoint changes the speed of the check, never its outcome.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pipeline.audit import ISSUED, OpLogError, Progress, check_ops
from pipeline.audit import truncation as _truncation
from pipeline.envelope import OP_COLUMNS, op_from_row
from pipeline.keys import NodeKey
from pipeline.storage import Conn, Storage

_PAGE = 20_000
_SAVE = (
    "INSERT INTO op_checkpoints (author, upto, mac) VALUES (?, ?, ?)"
    " ON CONFLICT (author) DO UPDATE SET upto = excluded.upto, mac = excluded.mac"
)


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """A successful check: this node's MAC over every op up to rowid ``upto``."""

    author: str
    upto: int
    mac: bytes

    def save(self, conn: Conn) -> None:
        """A write job recording this checkpoint (replacing the author's previous one)."""
        conn.execute(_SAVE, (self.author, self.upto, self.mac))


@dataclass(frozen=True, slots=True)
class _Scan:
    last_rowid: int
    prefix_mac: bytes | None  # over the rows up to the trusted rowid; None if not reached
    mac: bytes  # over every row scanned


def _feed(
    hasher: hashlib.blake2b, rows: Sequence[Any], trusted: int, prefix: bytes | None
) -> bytes | None:
    for row in rows:
        values = tuple(row)
        hasher.update(repr(values).encode("utf-8", "backslashreplace"))
        if values[0] == trusted:
            prefix = hasher.copy().digest()
    return prefix


async def _scan(storage: Storage, key: NodeKey, trusted: int) -> _Scan:
    """Check the log page by page, skipping signatures up to rowid ``trusted``.

    Raises:
        OpLogError: the first op that fails, or a cut tail.
    """
    progress, hasher = Progress(), key.checkpoint_hasher()
    prefix = hasher.copy().digest() if trusted == 0 else None
    issued = await storage.read(ISSUED)  # first: ops another node appends meanwhile are no cut
    while True:
        rows = await storage.read(
            f"SELECT {OP_COLUMNS} FROM ops WHERE rowid > ? ORDER BY rowid LIMIT ?",
            (progress.last_rowid, _PAGE),
        )
        if not rows:
            break
        bad = await check_ops(
            [op_from_row(row) for row in rows], progress, signed_after=trusted, key=key
        )
        if bad is not None:
            raise OpLogError(bad)
        prefix = await asyncio.to_thread(_feed, hasher, rows, trusted, prefix)
    bad = _truncation(progress, int(issued[0][0]) if issued else 0)
    if bad is not None:
        raise OpLogError(bad)
    return _Scan(progress.last_rowid, prefix, hasher.digest())


async def check_log(storage: Storage, key: NodeKey) -> Checkpoint:
    """Check the whole log as :func:`pipeline.audit.check_ops` does.

    Guarantees: the outcome equals checking every signature from rowid 1 (the checkpoint
    only skips work when the prefix is byte-for-byte what this node verified last time).
    Returns the new checkpoint, for the caller to :meth:`~Checkpoint.save`. Payloads are not
    decoded here (each was decoded when appended); ``musher audit verify`` replays them all.

    Raises:
        OpLogError: naming the first bad op, or the first op missing from a cut tail.
    """
    rows = await storage.read(
        "SELECT upto, mac FROM op_checkpoints WHERE author = ?", (key.public_hex,)
    )
    scan: _Scan | None = None
    if rows:
        trusted, mac = int(rows[0][0]), bytes(rows[0][1])
        try:
            scan = await _scan(storage, key, trusted)
        except OpLogError:
            scan = None  # the full check below names the first bad op
        if scan is not None and not hmac.compare_digest(scan.prefix_mac or b"", mac):
            scan = None
    if scan is None:
        scan = await _scan(storage, key, 0)
    return Checkpoint(key.public_hex, scan.last_rowid, scan.mac)
