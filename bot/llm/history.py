"""Per-room conversation history of the HTTP providers, kept in SQLite by whole turns.

A turn is every message one user prompt produced (the prompt, the assistant's answers, tool
calls and their results), stored in the provider's own wire format and keyed by
``(session, provider)`` so switching providers never mixes formats. Trimming drops whole
turns only, so a tool call always keeps its tool result.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from bot.db import Db
from pipeline.storage import Conn

Message = dict[str, Any]

_SCHEMA_STATEMENTS = (
    "CREATE TABLE IF NOT EXISTS llm_history("
    "id INTEGER PRIMARY KEY, session TEXT NOT NULL, provider TEXT NOT NULL, "
    "turn INTEGER NOT NULL, message TEXT NOT NULL /* JSON */)",
    "CREATE INDEX IF NOT EXISTS llm_history_by_turn ON llm_history(session, provider, turn)",
)
HISTORY_SCHEMA = ";\n".join(_SCHEMA_STATEMENTS) + ";\n"


async def ensure_schema(db: Db) -> None:
    """Create the history table and its index if missing. Idempotent."""

    def job(conn: Conn) -> None:
        for statement in _SCHEMA_STATEMENTS:
            conn.execute(statement)

    await db.write(job)


class History:
    """Whole-turn conversation memory over the daemon's :class:`Database`."""

    def __init__(self, db: Db) -> None:
        self._db = db

    async def load(self, session: str, provider: str) -> list[Message]:
        """Every kept message of ``session`` for ``provider``, oldest first."""
        rows = await self._db.read(
            "SELECT message FROM llm_history WHERE session = ? AND provider = ? ORDER BY id",
            (session, provider),
        )
        return [json.loads(row[0]) for row in rows]

    async def append_turn(
        self,
        session: str,
        provider: str,
        messages: Sequence[Message],
        keep_turns: int | None = None,
    ) -> None:
        """Store ``messages`` as the newest turn, then keep only the last ``keep_turns`` turns.

        One transaction: a reader sees the whole turn or none of it, and the trim happens
        with the insert. ``keep_turns=None`` keeps everything; ``0`` keeps nothing. Once
        called, a cancel of the caller does not stop the write (see :meth:`Database.write`).
        """
        encoded = [json.dumps(m, ensure_ascii=False, separators=(",", ":")) for m in messages]

        def job(conn: Conn) -> None:
            row = conn.execute(
                "SELECT COALESCE(MAX(turn), 0) FROM llm_history WHERE session = ? AND provider = ?",
                (session, provider),
            ).fetchone()
            turn = (row[0] if row else 0) + 1
            conn.executemany(
                "INSERT INTO llm_history(session, provider, turn, message) VALUES (?, ?, ?, ?)",
                [(session, provider, turn, text) for text in encoded],
            )
            if keep_turns is not None:
                conn.execute(
                    "DELETE FROM llm_history WHERE session = ? AND provider = ? AND turn <= ?",
                    (session, provider, turn - keep_turns),
                )

        await self._db.write(job)

    async def reset(self, session: str, provider: str | None = None) -> None:
        """Forget ``session``'s history (of one ``provider``, or of all). Idempotent."""

        def job(conn: Conn) -> None:
            if provider is None:
                conn.execute("DELETE FROM llm_history WHERE session = ?", (session,))
            else:
                conn.execute(
                    "DELETE FROM llm_history WHERE session = ? AND provider = ?",
                    (session, provider),
                )

        await self._db.write(job)
