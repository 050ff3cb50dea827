"""``musher store copy --from URL --to URL``: move an install between store backends (K1).

Every table of the source that the target's schema has is copied with its rows as they
are: the journal, the op log (in insertion order, ids and signatures intact), the
materialised tables, timers, transport state, costs and the rest. The source is read in one
transaction and the target written in one, so a failed copy leaves the target empty. A
target holding any row is refused. The copy is then checked with ``audit verify``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bot.db import Db
from bot.schema import DAEMON_SCHEMA
from bot.store_url import open_db, sqlite_path
from config.base import redact_url
from config.errors import PermanentError
from pipeline.audit import AuditReport, verify
from pipeline.materialise import create_tables
from pipeline.storage import Conn

_LIST_TABLES = "SELECT name FROM sqlite_master WHERE type = 'table'"
_NOT_COPIED = {"sqlite_sequence", "musher_sequence", "store_probe"}
_FIRST = ("ops",)  # then the rest by name; ids are copied, so order only matters for ops


class StoreCopyError(PermanentError):
    """The copy was refused (no source, a target with data); nothing was written."""


@dataclass(frozen=True, slots=True)
class CopyResult:
    """What was copied (rows per table), what was not (tables the target lacks), and the
    target's ``audit verify`` report."""

    rows: dict[str, int]
    skipped: tuple[str, ...]
    report: AuditReport

    def __str__(self) -> str:
        copied = ", ".join(f"{table} {n}" for table, n in self.rows.items() if n)
        lines = [f"copied: {copied or 'nothing (the source is empty)'}"]
        if self.skipped:
            lines.append(f"not copied (no such table in the target): {', '.join(self.skipped)}")
        lines.append(f"audit verify on the target: {self.report}")
        return "\n".join(lines)


def _tables(conn: Conn) -> list[str]:
    names = {row[0] for row in conn.execute(_LIST_TABLES).fetchall()} - _NOT_COPIED
    return [t for t in _FIRST if t in names] + sorted(names - set(_FIRST))


def _columns(conn: Conn, table: str) -> list[str]:
    return [row[1] for row in conn.execute(f"PRAGMA table_info({table})").fetchall()]


def _read_source(conn: Conn) -> dict[str, tuple[list[str], list[Any]]]:
    out = {}
    for table in _tables(conn):
        columns = _columns(conn, table)
        order = "rowid" if table == "ops" else "1"
        rows = conn.execute(f"SELECT {', '.join(columns)} FROM {table} ORDER BY {order}")
        out[table] = (columns, rows.fetchall())
    return out


async def copy_store(source_url: str, target_url: str, data_dir: Path) -> CopyResult:
    """Copy every row of ``source_url`` into the empty ``target_url``, then verify it.

    Raises:
        StoreCopyError: the source does not exist, or the target holds data.
        StoreUnavailable: a server cannot be reached.
    """
    path = sqlite_path(source_url)
    if path is not None and not path.exists():
        raise StoreCopyError(f"{source_url}: no database here")
    source = await open_db(source_url, data_dir)
    try:
        snapshot = await source.write(_read_source)
    finally:
        await source.aclose()
    target = await open_db(target_url, data_dir, DAEMON_SCHEMA)
    try:
        return await _fill(target, target_url, snapshot)
    finally:
        await target.aclose()


async def _fill(
    target: Db, target_url: str, snapshot: dict[str, tuple[list[str], list[Any]]]
) -> CopyResult:
    def write(conn: Conn) -> tuple[dict[str, int], tuple[str, ...]]:
        create_tables(conn)
        present = set(_tables(conn))
        for table in present:
            if conn.execute(f"SELECT 1 FROM {table} LIMIT 1").fetchall():
                raise StoreCopyError(
                    f"{redact_url(target_url)} is not empty (table {table} has rows);"
                    " copy only into a new database"
                )
        rows, skipped = {}, []
        for table, (columns, values) in snapshot.items():
            if table not in present:
                skipped.append(table)
                continue
            marks = ", ".join("?" * len(columns))
            insert = f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})"
            conn.executemany(insert, [tuple(row) for row in values])
            rows[table] = len(values)
        return rows, tuple(skipped)

    rows, skipped = await target.write(write)
    return CopyResult(rows, skipped, await verify(target))
