"""The ingress journal (I1, D6) and the room log.

Every accepted inbound message is a row of ``inbound`` before the transport acknowledges it;
``(transport, room, event_id)`` is unique, so a redelivery is recognised even after a restart
and two rooms' web clients cannot silence each other with the same client id (I1).
Free text stays ``pending`` until the turn that answered it finished (or ``stop`` dropped it);
a batch is recorded in ``turns`` before the LLM is called, so after a crash the daemon knows
which messages were already being answered. ``room_log`` keeps what each room saw, in order,
for the web API and its SSE stream.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import TypeVar

from bot.db import Db
from bot.messages import InboundMessage, session_key
from config.errors import StoreUnavailable
from pipeline.storage import Conn, insert_id

SCHEMA = """
CREATE TABLE IF NOT EXISTS inbound (
    id          INTEGER PRIMARY KEY,
    transport   TEXT NOT NULL,
    event_id    TEXT NOT NULL,
    room        TEXT NOT NULL,
    sender      TEXT NOT NULL,
    text        TEXT NOT NULL,
    ts          REAL NOT NULL,
    received_at REAL NOT NULL,
    kind        TEXT NOT NULL,
    state       TEXT NOT NULL,
    turn_id     INTEGER,
    node        TEXT,
    UNIQUE (transport, room, event_id)
);
CREATE INDEX IF NOT EXISTS inbound_pending ON inbound (state) WHERE state = 'pending';
CREATE INDEX IF NOT EXISTS inbound_received ON inbound (received_at);
CREATE TABLE IF NOT EXISTS turns (
    id          INTEGER PRIMARY KEY,
    session     TEXT NOT NULL,
    started_at  REAL NOT NULL,
    finished_at REAL,
    outcome     TEXT
);
CREATE TABLE IF NOT EXISTS room_log (
    seq     INTEGER PRIMARY KEY AUTOINCREMENT,
    session TEXT NOT NULL,
    role    TEXT NOT NULL,
    sender  TEXT NOT NULL,
    text    TEXT NOT NULL,
    ts      REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS room_log_session ON room_log (session, seq);
CREATE TABLE IF NOT EXISTS stranger_replies (
    transport TEXT NOT NULL,
    sender    TEXT NOT NULL,
    day       TEXT NOT NULL,
    PRIMARY KEY (transport, sender, day)
);
"""

_INSERT_INBOUND = (
    "INSERT INTO inbound (transport, event_id, room, sender, text, ts, received_at, kind,"
    " state, node) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
    " ON CONFLICT (transport, room, event_id) DO NOTHING"
)
_INSERT_TURN = "INSERT INTO turns (session, started_at) VALUES (?, ?)"
_INSERT_LOG = "INSERT INTO room_log (session, role, sender, text, ts) VALUES (?, ?, ?, ?, ?)"

DEDUPE_DAYS = 7
NOTIFY_CHANNEL = "musher_journal"  # PostgreSQL: a session key, when its free text is journalled
T = TypeVar("T")
Guard = Callable[[Conn], None]  # a write job's fence (bot.room_leases): raises to refuse
BotLine = tuple[str, str, str, str]
"""A room log line to append: ``(session, role, sender, text)``."""


def _nothing(conn: Conn) -> None:
    return None


class Kind(StrEnum):
    """What the router made of an inbound message."""

    TEXT = "text"  # free text for the dispatcher
    COMMAND = "command"
    IGNORED = "ignored"  # not addressed to the bot (shared room, no mention, ambient off)
    REFUSED = "refused"  # a sender who is not allowed


class State(StrEnum):
    PENDING = "pending"  # not yet answered
    ANSWERED = "answered"
    STOPPED = "stopped"  # dropped by `stop`
    DONE = "done"  # nothing to answer (ignored, refused, command handled)


@dataclass(frozen=True, slots=True)
class LogEntry:
    """One line of a room's visible history."""

    seq: int
    session: str
    role: str  # "user" | "bot"
    sender: str
    text: str
    ts: float

    def to_json(self) -> dict[str, object]:
        return {
            "seq": self.seq,
            "role": self.role,
            "sender": self.sender,
            "text": self.text,
            "ts": self.ts,
        }


@dataclass(frozen=True, slots=True)
class Pending:
    """A journalled message that was never answered (for crash replay)."""

    id: int
    transport: str
    room: str
    sender: str
    text: str
    kind: Kind
    turn_id: int | None
    node: str | None = None  # the daemon that received it (its key; None: an older musher)


class Journal:
    """Reads and writes the ingress journal and room log through one :class:`Database`.

    ``node``: this daemon's key, kept with each message it receives, so that on a shared
    store a daemon starting up leaves a live daemon's commands in flight to that daemon."""

    def __init__(self, db: Db, node: str | None = None) -> None:
        self.db, self.node = db, node
        self._notify = db.backend == "postgresql"  # wake the room's lease holder (K2)

    async def record(
        self, msg: InboundMessage, kind: Kind, text: str
    ) -> tuple[int, LogEntry | None] | None:
        """Journal ``msg`` durably; ``None`` if ``(transport, room, event_id)`` was seen before.

        Addressed messages (text and commands) also get a ``room_log`` line in the same
        transaction. Returns the journal id and that line.

        Raises:
            StoreUnavailable: the store is failing (until a probe write succeeds again) or
                this write failed: the message is not journalled, so it must not be acked.
        """
        if self.db.health.reason is not None:
            raise StoreUnavailable(self.db.health.reason)
        state = State.PENDING if kind in (Kind.TEXT, Kind.COMMAND) else State.DONE
        now = time.time()

        def job(conn: Conn) -> tuple[int, LogEntry | None] | None:
            values = (msg.transport, msg.event_id, msg.room, msg.sender, text, msg.ts, now, kind,
                      state, self.node)  # fmt: skip
            row_id = insert_id(conn, _INSERT_INBOUND, values, "id")
            if row_id is None:
                return None
            entry = None
            if state is State.PENDING:
                entry = _append_log(conn, msg.session, "user", msg.sender, text, now)
            if self._notify and kind is Kind.TEXT:
                conn.execute("SELECT pg_notify(?, ?)", (NOTIFY_CHANNEL, str(msg.session)))
            return row_id, entry

        return await self.db.write(job)

    async def start_turn(self, session: str, ids: Iterable[int]) -> int:
        """Record that a turn now answers ``ids``; returns the turn id (D6)."""
        turn_id, _ = await self.start_turn_reading(session, ids, _nothing)
        return turn_id

    async def start_turn_reading(
        self,
        session: str,
        ids: Iterable[int],
        also: Callable[[Conn], T],
        fence: Guard | None = None,
    ) -> tuple[int, T]:
        """:meth:`start_turn`, and ``also`` (a read the turn needs) run in the same
        transaction: the turn id and what ``also`` returned, for one write and no read.
        ``fence`` (the room's lease) may refuse the write."""
        id_list = list(ids)

        def job(conn: Conn) -> tuple[int, T]:
            if fence is not None:
                fence(conn)
            turn_id = insert_id(conn, _INSERT_TURN, (session, time.time()), "id")
            assert turn_id is not None  # no conflict clause: a failed insert raises
            conn.executemany(
                "UPDATE inbound SET turn_id = ? WHERE id = ?", [(turn_id, i) for i in id_list]
            )
            return turn_id, also(conn)

        return await self.db.write(job)

    async def join_turn(self, turn_id: int, ids: Sequence[int]) -> None:
        """Record that the running turn ``turn_id`` also answers ``ids`` (busy mode steer)."""
        rows = [(turn_id, i) for i in ids]

        def job(conn: Conn) -> None:
            conn.executemany("UPDATE inbound SET turn_id = ? WHERE id = ?", rows)

        await self.db.write(job)

    async def finish_turn(
        self,
        turn_id: int,
        ids: Iterable[int],
        outcome: str,
        also: Callable[[Conn], None] | None = None,
    ) -> None:
        """Mark the turn finished and its messages answered; ``also`` joins the transaction."""
        await self.db.write(_finish_job(turn_id, list(ids), outcome, also))

    async def finish_turn_saying(
        self,
        turn_id: int,
        ids: Iterable[int],
        outcome: str,
        also: Callable[[Conn], None] | None,
        line: BotLine,
    ) -> LogEntry:
        """:meth:`finish_turn`, and ``line`` (the turn's last reply) appended to the room log
        in the same transaction: one write for both. Returns its log entry."""
        finish = _finish_job(turn_id, list(ids), outcome, also)

        def job(conn: Conn) -> LogEntry:
            finish(conn)
            return _append_log(conn, *line, time.time())

        return await self.db.write(job)

    async def close_interrupted(self, turn_ids: Iterable[int]) -> None:
        """Record that the room was told these turns were cut short by a restart, so the
        next restart does not tell it again (their messages stay pending until answered)."""
        rows = [(time.time(), turn_id) for turn_id in turn_ids]

        def job(conn: Conn) -> None:
            conn.executemany(
                "UPDATE turns SET finished_at = ?, outcome = 'interrupted' WHERE id = ?", rows
            )

        await self.db.write(job)

    async def mark(self, ids: Iterable[int], state: State) -> None:
        """Set the state of journal rows (``stop`` drops, commands done)."""
        id_list = list(ids)

        def job(conn: Conn) -> None:
            _set_state(conn, id_list, state)

        await self.db.write(job)

    async def pending(self, session: str | None = None) -> list[Pending]:
        """Every addressed message not yet answered (in ``session`` only, when given),
        oldest first (crash replay, D6).

        ``turn_id`` is set only while that turn is unfinished: a turn the room was already
        told about (:meth:`close_interrupted`) is not reported again.
        """
        where, params = "", tuple[str, ...]()  # every room
        if session is not None:
            transport, _, room = session.partition(":")
            where = " AND i.transport = ? AND i.room = ?"
            params = (transport, room)
        rows = await self.db.read(
            "SELECT i.id, i.transport, i.room, i.sender, i.text, i.kind,"
            " CASE WHEN t.finished_at IS NULL THEN i.turn_id END AS turn_id, i.node"
            " FROM inbound i LEFT JOIN turns t ON t.id = i.turn_id"
            f" WHERE i.state = 'pending'{where} ORDER BY i.id",
            params,
        )
        return [Pending(r[0], r[1], r[2], r[3], r[4], Kind(r[5]), r[6], r[7]) for r in rows]

    async def log_bot(
        self, session: str, sender: str, text: str, fence: Guard | None = None
    ) -> LogEntry:
        """Append a bot message to the room log (unless ``fence`` refuses the write)."""
        now = time.time()

        def job(conn: Conn) -> LogEntry:
            if fence is not None:
                fence(conn)
            return _append_log(conn, session, "bot", sender, text, now)

        return await self.db.write(job)

    async def history(self, session: str, after: int = 0, limit: int = 500) -> list[LogEntry]:
        """The room log of ``session`` after ``seq``, oldest first, at most ``limit`` lines."""
        rows = await self.db.read(
            "SELECT seq, session, role, sender, text, ts FROM room_log"
            " WHERE session = ? AND seq > ? ORDER BY seq LIMIT ?",
            (session, after, limit),
        )
        return [LogEntry(*tuple(r)) for r in rows]

    async def last_seq(self, session: str) -> int:
        """The newest room log ``seq`` of ``session`` (0 when empty)."""
        rows = await self.db.read("SELECT MAX(seq) FROM room_log WHERE session = ?", (session,))
        return int(rows[0][0] or 0)

    async def first_refusal_today(self, transport: str, sender: str) -> bool:
        """True exactly once per sender per UTC day: whether to send the polite refusal."""
        day = time.strftime("%Y-%m-%d", time.gmtime())

        def job(conn: Conn) -> bool:
            cursor = conn.execute(
                "INSERT INTO stranger_replies VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
                (transport, sender, day),
            )
            return cursor.rowcount == 1

        return await self.db.write(job)

    async def command_rooms(self) -> list[str]:
        """The sessions that ran a command in the journal's memory (about ``DEDUPE_DAYS``)."""
        return (await self.command_rooms_after(0))[0]

    async def command_rooms_after(self, after: int) -> tuple[list[str], int]:
        """The sessions with a command journalled after row ``after``, and the last such
        row (``after`` when there is none). Ids rise in commit order on both backends, so
        reading on from the returned id misses no later command."""
        rows = await self.db.read(
            "SELECT transport, room, MAX(id) FROM inbound WHERE kind = ? AND id > ?"
            " GROUP BY transport, room",
            (Kind.COMMAND.value, after),
        )
        last = max((int(row[2]) for row in rows), default=after)
        return sorted({session_key(transport, room) for transport, room, _ in rows}), last

    async def prune(self, days: float = DEDUPE_DAYS) -> int:
        """Forget finished journal rows older than ``days`` (dedupe lasts at least that long)."""
        cutoff = time.time() - days * 86400

        def job(conn: Conn) -> int:
            cursor = conn.execute(
                "DELETE FROM inbound WHERE received_at < ? AND state != 'pending'", (cutoff,)
            )
            return cursor.rowcount

        return await self.db.write(job)


_OLD_COLUMNS = "id, transport, event_id, room, sender, text, ts, received_at, kind, state, turn_id"


async def migrate(db: Db) -> None:
    """Bring a journal written by an older musher up to :data:`SCHEMA`, in one transaction
    each, rows kept. Idempotent.

    - Its ``inbound`` table was unique on ``(transport, event_id)`` (SQLite only): rebuilt.
    - ``inbound`` had no ``node`` column: added (NULL for the rows it has).
    """

    def unique_per_room(conn: Conn) -> None:
        row = conn.execute("SELECT sql FROM sqlite_master WHERE name = 'inbound'").fetchone()
        if row is None or "UNIQUE (transport, event_id)" not in row[0]:
            return
        conn.execute("ALTER TABLE inbound RENAME TO inbound_old")
        for name in ("inbound_pending", "inbound_received"):
            conn.execute(f"DROP INDEX IF EXISTS {name}")
        for statement in SCHEMA.split(";"):
            if "inbound" in statement:
                conn.execute(statement)
        conn.execute(f"INSERT INTO inbound ({_OLD_COLUMNS}) SELECT {_OLD_COLUMNS} FROM inbound_old")
        conn.execute("DROP TABLE inbound_old")

    def node_column(conn: Conn) -> None:
        columns = {row[1] for row in conn.execute("PRAGMA table_info(inbound)").fetchall()}
        if "node" not in columns:
            conn.execute("ALTER TABLE inbound ADD COLUMN node TEXT")

    if db.backend == "sqlite":  # no older musher ever wrote this table elsewhere
        await db.write(unique_per_room)
    await db.write(node_column)


def _append_log(conn: Conn, session: str, role: str, sender: str, text: str, ts: float) -> LogEntry:
    seq = insert_id(conn, _INSERT_LOG, (session, role, sender, text, ts), "seq")
    assert seq is not None  # no conflict clause: a failed insert raises
    return LogEntry(seq, session, role, sender, text, ts)


def _finish_job(
    turn_id: int, ids: Sequence[int], outcome: str, also: Callable[[Conn], None] | None
) -> Callable[[Conn], None]:
    def job(conn: Conn) -> None:
        conn.execute(
            "UPDATE turns SET finished_at = ?, outcome = ? WHERE id = ?",
            (time.time(), outcome, turn_id),
        )
        _set_state(conn, ids, State.ANSWERED)
        if also is not None:
            also(conn)

    return job


def _set_state(conn: Conn, ids: Sequence[int], state: State) -> None:
    conn.executemany("UPDATE inbound SET state = ? WHERE id = ?", [(state, i) for i in ids])
