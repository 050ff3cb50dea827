"""The ``projects`` table: its columns, the migration of an older table, and how the
project ops (:mod:`pipeline.project_ops`) change it. Used by :func:`pipeline.materialise.apply`
inside the op's transaction, and by replay, so both rebuild the same rows.
"""

from __future__ import annotations

from typing import Any

from pipeline.canonical import canonical_json
from pipeline.envelope import SignedOp
from pipeline.errors import PipelineError
from pipeline.project_ops import AddProject, CreateProject, RemoveProject, SetProject
from pipeline.storage import Conn

PROJECTS_TABLE = """CREATE TABLE IF NOT EXISTS projects (
        name TEXT PRIMARY KEY, path TEXT NOT NULL, base_branch TEXT NOT NULL,
        timezone TEXT NOT NULL, origin TEXT NOT NULL, created_at REAL NOT NULL,
        stack TEXT NOT NULL DEFAULT 'generic', sandbox TEXT NOT NULL DEFAULT 'none',
        remote TEXT, qa TEXT NOT NULL DEFAULT 'human', gates TEXT NOT NULL DEFAULT '[]')"""
ADDED_COLUMNS: tuple[tuple[str, str, Any], ...] = (
    ("stack", "TEXT NOT NULL DEFAULT 'generic'", "generic"),
    ("sandbox", "TEXT NOT NULL DEFAULT 'none'", "none"),
    ("remote", "TEXT", None),
    ("qa", "TEXT NOT NULL DEFAULT 'human'", "human"),
    ("gates", "TEXT NOT NULL DEFAULT '[]'", "[]"),
)
"""The columns added after the first version of the table, with the value an older row
reads as (what ``ALTER TABLE … DEFAULT`` gives it)."""
PROJECT_COLUMNS = "name, path, base_branch, timezone, origin, created_at, " + ", ".join(
    name for name, _, _ in ADDED_COLUMNS
)


def _columns(conn: Conn) -> list[str]:
    return [row[1] for row in conn.execute("PRAGMA table_info(projects)").fetchall()]


def add_project_columns(conn: Conn) -> bool:
    """Add the settings columns to a ``projects`` table of an older version; returns
    whether it did. Run it inside the caller's transaction, before the schema statements."""
    present = _columns(conn)
    if not present:
        return False
    missing = [(name, decl) for name, decl, _ in ADDED_COLUMNS if name not in present]
    for name, decl in missing:
        conn.execute(f"ALTER TABLE projects ADD COLUMN {name} {decl}")
    return bool(missing)


def as_migrated(conn: Conn, rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """``SELECT *`` rows of ``projects`` as :func:`add_project_columns` would leave them, so
    ``audit verify`` (which never writes) can check a data dir of an older version."""
    present = _columns(conn)
    pads = [default for name, _, default in ADDED_COLUMNS if name not in present]
    return [(*row, *pads) for row in rows] if pads else rows


def _exists(conn: Conn, name: str) -> bool:
    return bool(conn.execute("SELECT 1 FROM projects WHERE name = ?", (name,)).fetchall())


def _sql_value(name: str, value: Any) -> Any:
    return canonical_json([list(argv) for argv in value]) if name == "gates" else value


def add_project(conn: Conn, change: AddProject | CreateProject, op: SignedOp) -> tuple[str, ...]:
    """Insert the project's row; refused when the name is registered."""
    if _exists(conn, change.name):
        raise PipelineError(f"project {change.name!r} already exists")
    settings = {name: _sql_value(name, value) for name, value in change.settings().items()}
    names = ["name", "path", "origin", "created_at", *settings]
    values = [change.name, change.path, op.origin, op.ts, *settings.values()]
    marks = ", ".join("?" * len(names))
    conn.execute(f"INSERT INTO projects ({', '.join(names)}) VALUES ({marks})", values)
    return ()


def set_project(conn: Conn, change: SetProject) -> tuple[str, ...]:
    """Update the changed settings; refused for an unknown project."""
    if not _exists(conn, change.name):
        raise PipelineError(f"no project {change.name!r}")
    settings = change.settings()
    assignments = ", ".join(f"{name} = ?" for name in settings)
    values = [_sql_value(name, value) for name, value in settings.items()]
    conn.execute(f"UPDATE projects SET {assignments} WHERE name = ?", (*values, change.name))
    return tuple(sorted(settings))


def remove_project(conn: Conn, change: RemoveProject) -> tuple[str, ...]:
    """Delete the row, the project's items and timers; rooms on it go back to the default.

    The project's ``item_numbers`` row stays, so its numbers are never issued again (P5).
    Returns what was cleared (``project``, ``3 items``, ``1 timer``, ``2 rooms``).
    """
    name = change.name
    if not _exists(conn, name):
        raise PipelineError(f"no project {name!r}")
    conn.execute("DELETE FROM projects WHERE name = ?", (name,))
    cleared = ["project"]
    for what, query in (
        ("item", "DELETE FROM items WHERE project = ? RETURNING number"),
        ("timer", "DELETE FROM timers WHERE project = ? RETURNING id"),
        ("agent state", "DELETE FROM agent_runs WHERE project = ? RETURNING item"),
        ("room", "UPDATE rooms SET project = NULL WHERE project = ? RETURNING session"),
    ):
        count = len(conn.execute(query, (name,)).fetchall())
        if count:
            cleared.append(f"{count} {what}{'s' * (count != 1)}")
    return tuple(cleared)
