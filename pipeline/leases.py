"""Leases with fencing tokens (K2): who may act on a room, or lead a transport account.

A lease is a row of ``leases``: its name (``room:web:lobby``, ``leader:matrix:@bot:x``), the
owner (a node's public key), a fencing token and an expiry. :func:`acquire` takes a free or
expired lease (the token rises by one on every change of owner, and never falls: a released
lease keeps its row) or renews the caller's own live one; :func:`renew` extends a live lease
of the caller's and nothing else; :func:`release` expires it at once. :func:`fence` is a
write job's guard: it raises :class:`LeaseLost` unless the lease is still the caller's,
with that token and unexpired, and on PostgreSQL it row-locks the lease until the job's
transaction ends, so no other node can take the lease over between the check and the
commit. A holder must stop acting before ``expires_at`` by its own clock; nodes' clocks
are assumed in step to well under the TTL (``[store] lease_ttl_s``, 15 s).

Every function is a write job factory or a coroutine over :class:`pipeline.storage.Storage`,
in portable SQL, so leases work the same on SQLite (one daemon, several processes on one
file) and PostgreSQL (several daemons).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

from config.errors import MusherError
from pipeline.errors import PipelineError
from pipeline.storage import Conn, Storage, serialise

log = logging.getLogger("musher.leases")

SCHEMA = """
CREATE TABLE IF NOT EXISTS leases (
    name       TEXT PRIMARY KEY,
    owner      TEXT NOT NULL,
    token      INTEGER NOT NULL,
    expires_at REAL NOT NULL
);
"""

_ACQUIRE = (
    "INSERT INTO leases (name, owner, token, expires_at) VALUES (?1, ?2, 1, ?3)"
    " ON CONFLICT (name) DO UPDATE SET owner = excluded.owner, expires_at = excluded.expires_at,"
    " token = CASE WHEN leases.owner = excluded.owner AND leases.expires_at > ?4"
    " THEN leases.token ELSE leases.token + 1 END"
    " WHERE leases.expires_at <= ?4 OR leases.owner = excluded.owner"
    " RETURNING name, owner, token, expires_at"
)
_RENEW = (
    "UPDATE leases SET expires_at = ? WHERE name = ? AND owner = ? AND token = ?"
    " AND expires_at > ? RETURNING name, owner, token, expires_at"
)
_RELEASE = "UPDATE leases SET expires_at = 0 WHERE name = ? AND owner = ? AND token = ?"
_FENCE = (
    "UPDATE leases SET expires_at = expires_at WHERE name = ? AND owner = ? AND token = ?"
    " AND expires_at > ? RETURNING token"
)


class LeaseLost(PipelineError):
    """The lease expired or passed to another node: stop acting on what it guards."""


@dataclass(frozen=True, slots=True)
class Lease:
    """A lease as its holder got it; ``token`` fences the holder's writes."""

    name: str
    owner: str
    token: int
    expires_at: float


def _lease(row: Any) -> Lease:
    return Lease(str(row[0]), str(row[1]), int(row[2]), float(row[3]))


async def acquire(
    storage: Storage, name: str, owner: str, ttl_s: float, now: float
) -> Lease | None:
    """Take ``name`` for ``owner`` until ``now + ttl_s``, or None while another holds it.

    Free or expired: the caller gets it with the next token. Already the caller's and live:
    renewed, same token. Concurrent callers: exactly one wins.
    """

    def job(conn: Conn) -> Lease | None:
        serialise(conn, f"lease:{name}")
        rows = conn.execute(_ACQUIRE, (name, owner, now + ttl_s, now)).fetchall()
        return _lease(rows[0]) if rows else None

    return await storage.write(job)


async def renew(storage: Storage, lease: Lease, ttl_s: float, now: float) -> Lease:
    """Extend ``lease`` to ``now + ttl_s``.

    Raises:
        LeaseLost: it expired or another node holds it now; stop acting.
    """

    def job(conn: Conn) -> Lease:
        serialise(conn, f"lease:{lease.name}")
        params = (now + ttl_s, lease.name, lease.owner, lease.token, now)
        rows = conn.execute(_RENEW, params).fetchall()
        if not rows:
            raise LeaseLost(f"lease {lease.name} (token {lease.token}) is no longer ours")
        return _lease(rows[0])

    return await storage.write(job)


async def release(storage: Storage, lease: Lease) -> None:
    """Give ``lease`` up at once (a no-op if it already passed on); its token stays."""

    def job(conn: Conn) -> None:
        serialise(conn, f"lease:{lease.name}")
        conn.execute(_RELEASE, (lease.name, lease.owner, lease.token))

    await storage.write(job)


def fence(conn: Conn, lease: Lease, now: float) -> None:
    """Inside a write job: refuse to go on unless ``lease`` is still the caller's.

    Raises:
        LeaseLost: it expired or passed on; the job's transaction is rolled back.
    """
    serialise(conn, f"lease:{lease.name}")
    rows = conn.execute(_FENCE, (lease.name, lease.owner, lease.token, now)).fetchall()
    if not rows:
        raise LeaseLost(f"lease {lease.name} (token {lease.token}) is no longer ours")


async def holders(storage: Storage, now: float) -> list[Lease]:
    """Every live lease, by name."""
    rows = await storage.read(
        "SELECT name, owner, token, expires_at FROM leases WHERE expires_at > ? ORDER BY name",
        (now,),
    )
    return [_lease(row) for row in rows]


@contextlib.asynccontextmanager
async def holding(
    storage: Storage, name: str, owner: str, ttl_s: float, clock: Callable[[], float] = time.time
) -> AsyncIterator[Lease | None]:
    """Hold ``name`` while the body runs, for work one node at a time does (a project's
    merge): yields None, holding nothing, while another node holds it; else the lease,
    renewed every third of ``ttl_s`` until the body ends and then released. A renewal that
    fails is logged and the body goes on: what it guards is checked again by its own
    writes (a merge records its end only on an item still in Merge)."""
    got = await acquire(storage, name, owner, ttl_s, clock())
    if got is None:
        yield None
        return
    lease = got

    async def keep() -> None:
        nonlocal lease
        while True:
            await asyncio.sleep(ttl_s / 3)
            try:
                lease = await renew(storage, lease, ttl_s, clock())
            except LeaseLost as err:
                log.warning("%s; the work under it goes on unguarded", err)
                return
            except MusherError as err:
                log.warning("renewing %s failed: %s; trying again", name, err)

    keeper = asyncio.create_task(keep(), name=f"renew {name}")
    try:
        yield lease
    finally:
        keeper.cancel()
        await asyncio.gather(keeper, return_exceptions=True)
        try:
            await release(storage, lease)
        except MusherError as err:  # it runs out within the TTL
            log.warning("releasing %s failed: %s", name, err)
