"""The ``nodes`` table (K2, K3): every process that writes to the store, with a heartbeat.

A node is a daemon or a build agent, known by its Ed25519 public key (the ``author`` of
its ops). :func:`heartbeat` records that it is alive (and its name and role); the daemon
keeps it beating (:func:`keep_beating`) every third of ``[store] lease_ttl_s``.
:func:`nodes` lists them for ``/readyz`` and ``musher nodes``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from config.errors import MusherError
from pipeline.storage import Conn, Storage

log = logging.getLogger("musher.nodes")

SCHEMA = """
CREATE TABLE IF NOT EXISTS nodes (
    key          TEXT PRIMARY KEY,
    name         TEXT NOT NULL,
    role         TEXT NOT NULL,
    started_at   REAL NOT NULL,
    heartbeat_at REAL NOT NULL
);
"""

_BEAT = (
    "INSERT INTO nodes (key, name, role, started_at, heartbeat_at) VALUES (?, ?, ?, ?, ?)"
    " ON CONFLICT (key) DO UPDATE SET name = excluded.name, role = excluded.role,"
    " heartbeat_at = excluded.heartbeat_at"
)


@dataclass(frozen=True, slots=True)
class Node:
    """One node as last heard of."""

    key: str
    name: str
    role: str  # "daemon" | "agent"
    started_at: float
    heartbeat_at: float


async def heartbeat(storage: Storage, key: str, name: str, role: str, now: float) -> None:
    """Record that node ``key`` is alive at ``now`` (``started_at`` is kept from its
    first heartbeat)."""

    def job(conn: Conn) -> None:
        conn.execute(_BEAT, (key, name, role, now, now))

    await storage.write(job)


async def nodes(storage: Storage) -> list[Node]:
    """Every node ever heard of, by name then key."""
    rows = await storage.read(
        "SELECT key, name, role, started_at, heartbeat_at FROM nodes ORDER BY name, key"
    )
    return [Node(r[0], r[1], r[2], float(r[3]), float(r[4])) for r in rows]


async def live_keys(storage: Storage, ttl_s: float, now: float, but: str) -> set[str]:
    """The nodes other than ``but`` heard of within ``ttl_s`` of ``now``."""
    rows = await storage.read(
        "SELECT key FROM nodes WHERE heartbeat_at >= ? AND key <> ?", (now - ttl_s, but)
    )
    return {row[0] for row in rows}


async def keep_beating(
    storage: Storage,
    key: str,
    name: str,
    role: str,
    interval_s: float,
    clock: Callable[[], float] = time.time,
) -> None:
    """Heartbeat now and every ``interval_s`` until cancelled; a failed write is logged
    (the store's health already says why) and retried at the next beat."""
    while True:
        try:
            await heartbeat(storage, key, name, role, clock())
        except MusherError as err:
            log.error("node heartbeat failed: %s", err)
        await asyncio.sleep(interval_s)
