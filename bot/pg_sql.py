"""The SQL the stores write (SQLite's dialect, kept portable), translated once for PostgreSQL.

What differs, and nothing else, is handled here (see :mod:`pipeline.storage`):

- placeholders: ``?`` and ``?N`` become ``%s`` (numbered ones by reordering the
  parameters), a literal ``%`` becomes ``%%``; quoted text is left alone;
- column types in ``CREATE TABLE``/``ALTER TABLE``: ``INTEGER`` → ``BIGINT``, ``REAL`` →
  ``DOUBLE PRECISION``, ``BLOB`` → ``BYTEA``, ``TEXT`` → ``TEXT COLLATE "C"`` (so text
  sorts and compares by code point, as SQLite's does, and ``audit verify`` compares like
  with like);
- an ``INTEGER PRIMARY KEY`` column (with or without ``AUTOINCREMENT``) gets its value
  from a trigger. The op log's ``rowid`` comes from a row of ``musher_sequence`` (SQLite's
  ``sqlite_sequence``) bumped inside the inserting transaction and locked until commit, so
  op ids follow commit order without gaps: the replay order, and what the cluster bus
  reads on from. Every other table takes ``nextval`` of a sequence of its own
  (``musher_<table>_<column>_seq``), which never waits; where a reader pages by id,
  :data:`ORDER_KEYS` names the lock that makes ids follow commit order for the rows that
  reader reads (a room's log lines, the journalled commands) and nothing wider. Those
  locks are advisory, taken with ``pg_try_advisory_xact_lock``: a transaction never waits
  for one mid-way (two daemons' group commits taking them in opposite orders deadlocked,
  a second each), it fails with SQLSTATE :data:`BUSY` and :mod:`bot.pgdb` runs the group
  again with the lock taken first (:func:`lock_keys`);
- SQLite's ``BEFORE UPDATE/DELETE … RAISE(ABORT, …)`` triggers become PL/pgSQL ones;
- ``json_each(X)`` over a JSON array of integers, ``CAST(… AS REAL)``, and the catalogue
  reads of the migrations (``sqlite_master``'s tables, ``PRAGMA table_info(T)``).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

_TOKENS = re.compile(r"'(?:[^']|'')*'|\"[^\"]*\"|\?(\d*)|%")
_TABLE_INFO = re.compile(r"\s*PRAGMA table_info\((\w+)\)\s*", re.IGNORECASE)
_TABLE_LIST = "SELECT name FROM sqlite_master WHERE type = 'table'"
_JSON_EACH = re.compile(r"json_each\(([^()]+)\)")
_CREATE_TABLE = re.compile(r"\s*CREATE TABLE (?:IF NOT EXISTS )?(\w+)", re.IGNORECASE)
_ALTER_ADD = re.compile(r"\s*ALTER TABLE \w+ ADD COLUMN", re.IGNORECASE)
_ID_COLUMN = re.compile(r"(\w+)\s+INTEGER PRIMARY KEY(?: AUTOINCREMENT)?")
_TRIGGER = re.compile(
    r"\s*CREATE TRIGGER IF NOT EXISTS (\w+) BEFORE (UPDATE|DELETE) ON (\w+)\s+"
    r"BEGIN SELECT RAISE\(ABORT, '([^']*)'\); END\s*",
    re.IGNORECASE,
)
_TYPES = (
    (re.compile(r"\bINTEGER\b"), "BIGINT"),
    (re.compile(r"\bREAL\b"), "DOUBLE PRECISION"),
    (re.compile(r"\bBLOB\b"), "BYTEA"),
    (re.compile(r"\bTEXT\b"), 'TEXT COLLATE "C"'),
)

SEQUENCE_TABLE = (
    "CREATE TABLE IF NOT EXISTS musher_sequence"
    ' (name TEXT COLLATE "C" PRIMARY KEY, seq BIGINT NOT NULL)'
)


@dataclass(frozen=True)
class Statement:
    """A translated statement: its text and, for ``?N`` placeholders, which parameter
    each ``%s`` takes (None: the parameters in order)."""

    text: str
    order: tuple[int, ...] | None = None

    @functools.cached_property
    def query(self) -> bytes:
        """The text as psycopg takes it fastest (bytes: no re-encoding per call)."""
        return self.text.encode()

    def params(self, params: Sequence[Any] | None) -> Sequence[Any] | None:
        if self.order is None or params is None:
            return params
        return [params[i] for i in self.order]


@functools.lru_cache(maxsize=1024)
def statement(sql: str) -> Statement:
    """Translate one DML/query statement (see the module docstring)."""
    info = _TABLE_INFO.fullmatch(sql)
    if info is not None:
        return Statement(
            "SELECT ordinal_position - 1, column_name FROM information_schema.columns"
            f" WHERE table_schema = current_schema() AND table_name = '{info.group(1)}'"
            " ORDER BY ordinal_position"
        )
    if sql.strip() == _TABLE_LIST:
        return Statement(
            "SELECT CASE table_name WHEN 'musher_sequence' THEN 'sqlite_sequence'"
            " ELSE table_name END FROM information_schema.tables"
            " WHERE table_schema = current_schema()"
        )
    sql = sql.replace("sqlite_sequence", "musher_sequence")
    sql = re.sub(r"AS REAL\)", "AS DOUBLE PRECISION)", sql)
    sql = _JSON_EACH.sub(_json_each, sql)
    order: list[int] = []
    numbered = False

    def placeholder(match: re.Match[str]) -> str:
        nonlocal numbered
        text = match.group(0)
        if text == "%":
            return "%%"
        if not text.startswith("?"):
            return text.replace("%", "%%")  # quoted: psycopg still reads every % in it
        if match.group(1):
            numbered = True
            order.append(int(match.group(1)) - 1)
        else:
            order.append(len(order))
        return "%s"

    text = _TOKENS.sub(placeholder, sql)
    return Statement(text, tuple(order) if numbered else None)


def _json_each(match: re.Match[str]) -> str:
    source = match.group(1).strip()
    return (
        "LATERAL (SELECT CAST(je.e AS BIGINT) AS value"
        f" FROM jsonb_array_elements_text(CAST({source} AS jsonb)) AS je(e))"
        " AS json_each"
    )


def is_ddl(sql: str) -> bool:
    head = sql.lstrip()[:13].upper()
    return head.startswith(("CREATE", "ALTER", "DROP"))


@functools.lru_cache(maxsize=256)
def ddl(sql: str) -> tuple[str, ...]:
    """Translate one schema statement into the PostgreSQL statements that do the same."""
    trigger = _TRIGGER.fullmatch(sql)
    if trigger is not None:
        name, event, table, message = trigger.groups()
        return (
            f"CREATE OR REPLACE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $$"
            f" BEGIN RAISE EXCEPTION '{message}'; END $$",
            f"CREATE OR REPLACE TRIGGER {name} BEFORE {event} ON {table}"
            f" FOR EACH ROW EXECUTE FUNCTION {name}()",
        )
    table = _CREATE_TABLE.match(sql)
    if table is None and _ALTER_ADD.match(sql) is None:
        return (sql,)
    id_column = _ID_COLUMN.search(sql)
    text = _ID_COLUMN.sub(r"\1 INTEGER PRIMARY KEY", sql)
    for pattern, replacement in _TYPES:
        text = pattern.sub(replacement, text)
    if table is None or id_column is None:
        return (text,)
    return (text, *_ordered_ids(table.group(1), id_column.group(1)))


BUSY = "MU001"
"""The SQLSTATE a trigger raises when another transaction holds the lock it needs; the
message is the lock's key (see :meth:`bot.pgdb.PgConn.serialise` for the same in Python)."""

ORDER_KEYS = {
    "room_log": "'room_log:' || NEW.session",
    "inbound": "CASE WHEN NEW.kind = 'command' THEN 'inbound:command' END",
}
"""Per table, the key under which its ids follow commit order (NULL: no order needed):
``Journal.history`` pages a room's log by ``seq``, ``Journal.command_rooms_after`` the
commands by id."""

_HOLD = "pg_try_advisory_xact_lock(hashtextextended({key}, 0))"


def _locking(key: str) -> str:
    """PL/pgSQL, a trigger's ``DECLARE … BEGIN``: take the advisory lock ``key`` (an SQL
    text expression; NULL: none) for the rest of the transaction, or fail at once with
    :data:`BUSY` if another transaction holds it."""
    return (
        f"DECLARE k TEXT := {key}; BEGIN IF k IS NOT NULL AND NOT {_HOLD.format(key='k')} THEN"
        f" RAISE EXCEPTION USING ERRCODE = '{BUSY}', MESSAGE = k; END IF;"
    )


TRY_LOCK = ("SELECT " + _HOLD.format(key="%s")).encode()
"""One key's advisory lock, without waiting: one boolean, whether it was taken."""
SORTED_KEYS = b"SELECT DISTINCT hashtextextended(k, 0) AS h FROM unnest(%s::text[]) AS k ORDER BY h"
LOCK = b"SELECT pg_advisory_xact_lock(%s)"


def _ordered_ids(table: str, column: str) -> tuple[str, ...]:
    """The trigger giving ``table.column`` SQLite's AUTOINCREMENT (see the module doc)."""
    function = f"musher_next_{table}"
    if table != "ops":
        return (*_sequence(table, column), _trigger(function, table))
    key = f"'ids:{table}'"
    return (
        SEQUENCE_TABLE,
        f"INSERT INTO musher_sequence (name, seq) VALUES ('{table}', 0)"
        " ON CONFLICT (name) DO NOTHING",
        f"CREATE OR REPLACE FUNCTION {function}() RETURNS trigger LANGUAGE plpgsql AS $$"
        f" {_locking(key)}"
        f" UPDATE musher_sequence SET seq = CASE WHEN NEW.{column} IS NULL THEN seq + 1"
        f" ELSE GREATEST(seq, NEW.{column}) END WHERE name = '{table}'"
        f" RETURNING COALESCE(NEW.{column}, seq) INTO NEW.{column};"
        " RETURN NEW; END $$",
        _trigger(function, table),
    )


def _sequence(table: str, column: str) -> tuple[str, str]:
    """A sequence for ``table.column``, created once and started past every id the table
    (or, in a database written before, its ``musher_sequence`` row) ever handed out; then
    the trigger function taking ids from it (an explicit id, as ``store copy`` writes,
    moves the sequence past it; the lock of :data:`ORDER_KEYS` is taken before the id)."""
    seq = f"musher_{table}_{column}_seq"
    order = ORDER_KEYS.get(table, "NULL")
    create = (
        "DO $$ DECLARE start BIGINT := 0; BEGIN"
        f" IF to_regclass('{seq}') IS NULL THEN"
        " IF to_regclass('musher_sequence') IS NOT NULL THEN"
        f" SELECT COALESCE(MAX(seq), 0) INTO start FROM musher_sequence WHERE name = '{table}';"
        " END IF;"
        f" SELECT GREATEST(start, COALESCE(MAX({column}), 0)) INTO start FROM {table};"
        f" CREATE SEQUENCE {seq};"
        f" IF start > 0 THEN PERFORM setval('{seq}', start); END IF;"
        " END IF; END $$"
    )
    function = (
        f"CREATE OR REPLACE FUNCTION musher_next_{table}() RETURNS trigger LANGUAGE plpgsql"
        f" AS $$ {_locking(order)}"
        f" IF NEW.{column} IS NULL THEN NEW.{column} := nextval('{seq}');"
        f" ELSIF NEW.{column} > (SELECT last_value FROM {seq}) THEN"
        f" PERFORM setval('{seq}', NEW.{column});"
        " END IF; RETURN NEW; END $$"
    )
    return create, function


def _trigger(function: str, table: str) -> str:
    return (
        f"CREATE OR REPLACE TRIGGER {function} BEFORE INSERT ON {table}"
        f" FOR EACH ROW EXECUTE FUNCTION {function}()"
    )


def script(sql: str) -> list[str]:
    """A ``;``-separated schema script (no ``;`` inside a statement) as statements."""
    return [part for part in (p.strip() for p in sql.split(";")) if part]
