"""The ``agent_runs`` table: each item's agent execution state, materialised from the
``agent.*`` ops (:mod:`pipeline.agent_ops`) inside the op's transaction.

The claim reads the item's row and refuses when it is active: one statement on one row of
the table, so a PostgreSQL backend can take it with ``SELECT … FOR UPDATE SKIP LOCKED`` and
headless nodes can share it (``node`` says who runs the agent).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pipeline.agent_ops import ACTIVE, AgentProgress, ClaimAgent, ClearAgent, EndAgent
from pipeline.errors import PipelineError
from pipeline.model import is_finished
from pipeline.storage import Conn

AGENT_RUNS_TABLE = """CREATE TABLE IF NOT EXISTS agent_runs (
    project TEXT NOT NULL, item INTEGER NOT NULL, state TEXT NOT NULL,
    profile TEXT NOT NULL, role TEXT NOT NULL, node TEXT NOT NULL, pid INTEGER,
    session_id TEXT, started REAL NOT NULL, heartbeat REAL NOT NULL,
    turns INTEGER NOT NULL, cost_usd REAL NOT NULL, attempts INTEGER NOT NULL,
    exit_code INTEGER, resume_at REAL, reason TEXT NOT NULL,
    PRIMARY KEY (project, item))"""
RUN_COLUMNS = (
    "project, item, state, profile, role, node, pid, session_id, started, heartbeat, turns,"
    " cost_usd, attempts, exit_code, resume_at, reason"
)


@dataclass(frozen=True, slots=True)
class AgentRun:
    """One item's agent execution state, as the table holds it."""

    project: str
    item: int
    state: str
    profile: str
    role: str
    node: str
    pid: int | None
    session_id: str | None
    started: float
    heartbeat: float
    turns: int
    cost_usd: float
    attempts: int
    exit_code: int | None
    resume_at: float | None
    reason: str

    @property
    def active(self) -> bool:
        """Claimed or running (or parked by a daemon that stopped)."""
        return self.state in ACTIVE


def run_from_row(row: Sequence[Any]) -> AgentRun:
    return AgentRun(*row)


def read_run(conn: Conn, project: str, number: int) -> AgentRun | None:
    rows = conn.execute(
        f"SELECT {RUN_COLUMNS} FROM agent_runs WHERE project = ? AND item = ?", (project, number)
    ).fetchall()
    return run_from_row(rows[0]) if rows else None


def apply_agent(
    conn: Conn,
    change: ClaimAgent | AgentProgress | EndAgent | ClearAgent,
    ts: float,
    item_stage: Any,
) -> tuple[str, ...]:
    """Apply one ``agent.*`` op; ``item_stage`` is the item's stage (None: no such item)."""
    old = read_run(conn, change.project, change.number)
    match change:
        case ClaimAgent():
            _claim(conn, change, old, ts, item_stage)
        case AgentProgress():
            _progress(conn, change, old, ts)
        case EndAgent():
            _end(conn, change, old, ts)
        case ClearAgent():
            gone = conn.execute(
                "DELETE FROM agent_runs WHERE project = ? AND item = ? RETURNING item",
                (change.project, change.number),
            ).fetchall()
            return ("agent state",) if gone else ()
    return ()


def _claim(conn: Conn, c: ClaimAgent, old: AgentRun | None, ts: float, stage: Any) -> None:
    """The one claim per item, cluster-wide: a new row is a plain INSERT (a concurrent
    claim of the same item on another connection fails on the key), an existing one is
    taken by a conditional UPDATE that re-reads the row under its lock (PostgreSQL's
    READ COMMITTED re-checks the WHERE after waiting), so two nodes never both win.
    ``resume`` takes back an active row only of the same node, ``takeover`` only of the
    node it names."""
    if stage is None:
        raise PipelineError(f"no item #{c.number} in {c.project}")
    if is_finished(stage):
        raise PipelineError(f"#{c.number} is finished; no agent works on it")
    busy = PipelineError(
        f"#{c.number} already has an agent ({old.profile}, {old.state} on {old.node});"
        f" `stop {c.number}` first"
        if old is not None
        else f"#{c.number} already has an agent"
    )
    holder = c.node if c.resume else c.takeover  # the node whose active row it may take
    if old is not None and old.active and old.node != holder:
        raise busy
    session = old.session_id if old is not None and c.resume else None  # another node's
    # session lives on its machine: a takeover starts a new one on the pushed branch
    cost = old.cost_usd if old is not None else 0.0
    if old is None:
        conn.execute(
            f"INSERT INTO agent_runs ({RUN_COLUMNS}) VALUES"
            " (?, ?, 'pending', ?, ?, ?, NULL, ?, ?, ?, 0, ?, ?, NULL, NULL, '')",
            (c.project, c.number, c.profile, c.role, c.node, session, ts, ts, cost, c.attempts),
        )
        return
    taken = conn.execute(
        "UPDATE agent_runs SET state = 'pending', profile = ?, role = ?, node = ?, pid = NULL,"
        " session_id = ?, started = ?, heartbeat = ?, turns = 0, cost_usd = ?, attempts = ?,"
        " exit_code = NULL, resume_at = NULL, reason = '' WHERE project = ? AND item = ?"
        " AND (state NOT IN ('pending', 'running') OR node = ?) RETURNING item",
        (c.profile, c.role, c.node, session, ts, ts, cost, c.attempts, c.project, c.number,
         "" if holder is None else holder),
    ).fetchall()  # fmt: skip
    if not taken:
        raise busy


def _fence(c: AgentProgress | EndAgent, old: AgentRun) -> None:
    """Refuse a node's write to a run it no longer holds (its claim was taken over)."""
    if c.node is not None and c.node != old.node:
        raise PipelineError(f"#{c.number} is worked by {old.node} now, not {c.node}")


def _progress(conn: Conn, c: AgentProgress, old: AgentRun | None, ts: float) -> None:
    if old is None or not old.active:
        raise PipelineError(f"#{c.number} has no running agent")
    _fence(c, old)
    f = c.fields
    conn.execute(
        "UPDATE agent_runs SET state = 'running', pid = ?, session_id = ?, turns = ?,"
        " heartbeat = ? WHERE project = ? AND item = ?",
        (f.get("pid", old.pid), f.get("session_id", old.session_id), f.get("turns", old.turns),
         ts, c.project, c.number),
    )  # fmt: skip


def _end(conn: Conn, c: EndAgent, old: AgentRun | None, ts: float) -> None:
    if old is None:
        raise PipelineError(f"#{c.number} has no agent")
    _fence(c, old)
    conn.execute(
        "UPDATE agent_runs SET state = ?, pid = NULL, heartbeat = ?, exit_code = ?,"
        " resume_at = ?, reason = ?, attempts = ?, cost_usd = ? WHERE project = ? AND item = ?",
        (c.state, ts, c.exit, c.resume_at, c.reason[-4000:], c.attempts,
         old.cost_usd + c.cost_usd, c.project, c.number),
    )  # fmt: skip
