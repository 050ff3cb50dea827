"""Which ``claude`` conversation each room continues: room session → CLI session id."""

from __future__ import annotations

import time
from collections.abc import Callable

from bot.db import Db
from pipeline.storage import Conn

SCHEMA = """
CREATE TABLE IF NOT EXISTS claude_sessions (
    session TEXT PRIMARY KEY,
    session_id TEXT NOT NULL,
    updated_at REAL NOT NULL
);
"""


async def ensure_schema(db: Db) -> None:
    """Create the ``claude_sessions`` table if it does not exist. Idempotent."""

    def job(conn: Conn) -> None:
        conn.execute(SCHEMA)

    await db.write(job)


class ClaudeSessions:
    """Durable map from a room (``"matrix:!abc"``) to the ``claude`` session id it resumes.

    Every change is committed before the call returns; a cancelled caller's write still
    lands (see :meth:`bot.db.Database.write`).
    """

    def __init__(self, db: Db, clock: Callable[[], float] = time.time) -> None:
        self._db = db
        self._clock = clock

    async def get(self, session: str) -> str | None:
        """The session id stored for ``session``, or None."""
        rows = await self._db.read(
            "SELECT session_id FROM claude_sessions WHERE session = ?", (session,)
        )
        return str(rows[0][0]) if rows else None

    async def set(self, session: str, session_id: str) -> None:
        """Remember ``session_id`` for ``session``, replacing any previous one."""
        now = self._clock()

        def job(conn: Conn) -> None:
            conn.execute(
                "INSERT INTO claude_sessions (session, session_id, updated_at) VALUES (?, ?, ?)"
                " ON CONFLICT(session) DO UPDATE SET"
                " session_id = excluded.session_id, updated_at = excluded.updated_at",
                (session, session_id, now),
            )

        await self._db.write(job)

    async def clear(self, session: str) -> None:
        """Forget ``session``'s conversation; the next turn starts a new one. Idempotent."""

        def job(conn: Conn) -> None:
            conn.execute("DELETE FROM claude_sessions WHERE session = ?", (session,))

        await self._db.write(job)
