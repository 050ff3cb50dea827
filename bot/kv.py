"""Small durable values a transport keeps between runs (a sync token, a warned-room flag)."""

from __future__ import annotations

from bot.db import Db
from pipeline.storage import Conn

SCHEMA = """
CREATE TABLE IF NOT EXISTS transport_state (
    transport TEXT NOT NULL,
    key       TEXT NOT NULL,
    value     TEXT NOT NULL,
    PRIMARY KEY (transport, key)
);
"""


def put_in(conn: Conn, transport: str, key: str, value: str) -> None:
    """Inside a write job: set ``(transport, key)`` to ``value`` (with the job's other rows)."""
    conn.execute(
        "INSERT INTO transport_state (transport, key, value) VALUES (?, ?, ?)"
        " ON CONFLICT (transport, key) DO UPDATE SET value = excluded.value",
        (transport, key, value),
    )


class TransportState:
    """``(transport, key) → value`` rows in the daemon database; writes are durable on return."""

    def __init__(self, db: Db) -> None:
        self.db = db

    async def get(self, transport: str, key: str) -> str | None:
        rows = await self.db.read(
            "SELECT value FROM transport_state WHERE transport = ? AND key = ?", (transport, key)
        )
        return str(rows[0][0]) if rows else None

    async def put(self, transport: str, key: str, value: str) -> None:
        def job(conn: Conn) -> None:
            put_in(conn, transport, key, value)

        await self.db.write(job)

    async def claim(self, transport: str, key: str, value: str) -> bool:
        """Set ``(transport, key)`` to ``value`` unless it is set already; whether this call
        set it. Durable on return; one write, no read, and of two callers only one wins."""

        def job(conn: Conn) -> bool:
            cursor = conn.execute(
                "INSERT INTO transport_state (transport, key, value) VALUES (?, ?, ?)"
                " ON CONFLICT (transport, key) DO NOTHING",
                (transport, key, value),
            )
            return cursor.rowcount > 0

        return await self.db.write(job)

    async def forget(self, transport: str, prefix: str, before: float) -> None:
        """Delete ``prefix…`` rows whose value (a Unix time) is older than ``before``."""

        def job(conn: Conn) -> None:
            conn.execute(
                "DELETE FROM transport_state WHERE transport = ? AND substr(key, 1, ?) = ?"
                " AND CAST(value AS REAL) < ?",
                (transport, len(prefix), prefix, before),
            )

        await self.db.write(job)
