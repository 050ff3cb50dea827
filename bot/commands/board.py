"""How the pipeline reads in a room: the board (``status``), one item, its history, summaries.

Pure functions from items to text; the commands in :mod:`bot.commands.pipeline` fetch the
items and reply with what these return. Badges and columns come from the typed stage only
(P2, lesson 1052); a frozen item shows in the column it will resume to (lesson 1085).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pipeline.agent_rows import AgentRun
from pipeline.board import BoardView, board_view
from pipeline.history import HistoryEntry
from pipeline.model import (
    Abandoned,
    Archived,
    Badge,
    Blocked,
    Coding,
    Column,
    Done,
    Frozen,
    Item,
    MergeFailure,
    Rejected,
    ReviewHold,
    Stage,
    Superseded,
    badge,
    column,
    stage_name,
)
from pipeline.store import ProjectRecord
from pipeline.transitions import allowed_moves

BOARD: tuple[tuple[Column, str], ...] = (
    (Column.BACKLOG, "Backlog"),
    (Column.CODING, "Coding"),
    (Column.QA, "QA"),
    (Column.MERGE, "Merge"),
    (Column.DONE, "Done"),
    (Column.CLOSED, "Closed"),
)
"""The columns ``status`` shows, in order; archived items are left out."""
BOARD_COLUMNS: tuple[Column, ...] = tuple(col for col, _ in BOARD)

EMOJI: dict[Badge, str] = {
    Badge.FROZEN: "❄️",
    Badge.BLOCKED: "⛔",
    Badge.ABANDONED: "🗑️",
    Badge.SUPERSEDED: "🔀",
    Badge.REJECTED: "🚫",
}
_DETAIL_LIMIT = 120
_NO_REASON = "no reason given"


def age(seconds: float) -> str:
    """A compact age: ``5m``, ``2h``, ``3d`` (at least ``1m``)."""
    minutes = max(1, int(seconds // 60))
    if minutes < 60:
        return f"{minutes}m"
    if minutes < 24 * 60:
        return f"{minutes // 60}h"
    return f"{minutes // (24 * 60)}d"


def _clip(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= _DETAIL_LIMIT else text[: _DETAIL_LIMIT - 1] + "…"


def stage_reason(stage: Stage) -> str:
    """Why the item is where it is, or ``""``: a block reason, ``by #7``, a merge commit."""
    match stage:
        case (
            Blocked(reason=reason)
            | ReviewHold(reason=reason)
            | Rejected(reason=reason)
            | Abandoned(reason=reason)
            | Archived(reason=reason)
        ):
            return "" if reason in (_NO_REASON, "completed") else _clip(reason)
        case MergeFailure(kind=kind, reason=reason):
            return f"{kind}: {_clip(reason)}"
        case Superseded(by=by):
            return f"by #{by}"
        case Done(merge_commit=commit):
            return f"merged as {commit[:12]}" if commit else ""
        case Frozen(resume_to=inner):
            return stage_reason(inner)
        case _:
            return ""


_REASON_LABEL: dict[type[Stage], str] = {
    Blocked: "blocked: ",
    ReviewHold: "on hold: ",
    Rejected: "rejected: ",
    MergeFailure: "merge failed, ",
    Superseded: "superseded ",
}


def stage_detail(stage: Stage) -> str:
    """What the board says after an item's title, or ``""``: ``blocked: no keys``, …"""
    inner = stage.resume_to if isinstance(stage, Frozen) else stage
    reason = stage_reason(inner)
    return _REASON_LABEL.get(type(inner), "") + reason if reason else ""


_MET = (Column.DONE, Column.ARCHIVED)


def is_met(dep: Item | None) -> bool:
    """A dependency is met when it is Done or Archived (a purged one never is)."""
    return dep is not None and column(dep.stage) in _MET


def unmet_deps(item: Item, dep_columns: Mapping[int, Column]) -> list[int]:
    """What a Backlog item waits for (P4): its live dependencies that are not met yet, given
    the board column of each live dependency. Items past Backlog wait for nothing, and a
    purged dependency is absent from ``dep_columns``: nothing to wait for, never listed."""
    if column(item.stage) is not Column.BACKLOG:
        return []
    return [n for n in item.depends_on if n in dep_columns and dep_columns[n] not in _MET]


def waiting_on(item: Item, by_number: dict[int, Item]) -> list[int]:
    """What a Backlog item waits for: its live dependencies not met yet (see unmet_deps)."""
    deps = (by_number.get(n) for n in item.depends_on)
    return unmet_deps(item, {dep.number: column(dep.stage) for dep in deps if dep is not None})


def item_line(item: Item, dep_columns: Mapping[int, Column], now: float) -> str:
    """``⛔ #3 API keys (waiting on: #1) — blocked: no keys · 2h``."""
    emoji = EMOJI.get(badge(item.stage))
    line = f"{emoji} {item.label}" if emoji else item.label
    unmet = unmet_deps(item, dep_columns)
    if unmet:
        line += f" (waiting on: {', '.join(f'#{n}' for n in unmet)})"
    detail = stage_detail(item.stage)
    if detail:
        line += f" — {detail}"
    return f"{line} · {age(now - item.created_at)}"


PER_COLUMN = 15  # items listed per column; the rest are counted (a chat reply must stay small)
NEWEST_FIRST = (Column.DONE, Column.CLOSED)  # finished columns show the latest work


def render_board(project: str, items: Sequence[Item], now: float) -> str:
    """The ``status`` board of ``items`` (every live item of ``project``): see
    :func:`render_view`, which ``status`` calls on the store's cut of the board."""
    return render_view(project, board_view(items, BOARD_COLUMNS, PER_COLUMN, NEWEST_FIRST), now)


def render_view(project: str, view: BoardView, now: float) -> str:
    """The ``status`` board: one section per non-empty column, the items ``view`` lists
    (at most ``PER_COLUMN``, by number; newest first in Done and Closed), the rest counted.

    ``view`` comes from ``board_view(…, BOARD_COLUMNS, PER_COLUMN, NEWEST_FIRST)``, of the
    store or of a full item list: the same board either way.
    """
    archived = view.counts.get(Column.ARCHIVED, 0)
    shown = sum(view.counts.values()) - archived
    head = f"{project}: {shown} item{'s' * (shown != 1)}"
    if archived:
        head += f" ({archived} archived not shown)"
    if not shown:
        return f"{head}. Add one with `new story <title>`."
    lines = [head]
    for col, label in BOARD:
        count = view.counts.get(col, 0)
        if not count:
            continue
        lines.append(f"{label} ({count})")
        listed = view.listed.get(col, ())
        lines.extend(f"  {item_line(item, view.dep_columns, now)}" for item in listed)
        if count > len(listed):
            lines.append(f"  … and {count - len(listed)} more (`status N` shows one)")
    return "\n".join(lines)


_UNSTICK: dict[type[Stage], str] = {
    Frozen: "unfreeze",
    Blocked: "unblock",
    ReviewHold: "release",
    Done: "accept",
    Abandoned: "reopen",
    Superseded: "reopen",
    Rejected: "reopen",
}


def _next_steps(item: Item) -> list[str]:
    steps = []
    moves = allowed_moves(item.stage)
    if moves:
        steps.append(f"Can move to: {', '.join(moves)}.")
    verb = _UNSTICK.get(type(item.stage))
    if verb:
        steps.append(f"`{verb} {item.number}` takes it on.")
    return steps or ["Nothing more can happen to it."]


def render_item(project: str, item: Item, items: Sequence[Item], now: float) -> str:
    """``status N``: one item's stage, dependencies, epic, origin and where it can go."""
    by_number = {i.number: i for i in items}
    stage = stage_name(item.stage)
    if isinstance(item.stage, Frozen):
        stage += f" (resumes to {stage_name(item.stage.resume_to)})"
    detail = stage_detail(item.stage)
    lines = [
        f"{item.label} ({item.kind.value}) in {project}",
        f"Stage: {stage}{' — ' + detail if detail else ''}; column {column(item.stage).value},"
        f" badge {badge(item.stage).value}",
    ]
    if item.depends_on:
        deps = [_dep(n, by_number.get(n)) for n in item.depends_on]
        lines.append(f"Depends on: {', '.join(deps)}")
    if item.epic is not None:
        epic = by_number.get(item.epic)
        lines.append(f"Epic: {epic.label if epic else f'#{item.epic} (gone)'}")
    if item.retries:
        lines.append(f"QA retries: {item.retries}")
    lines.append(
        f"Created {age(now - item.created_at)} ago by {item.origin.describe()};"
        f" last change {age(now - item.updated_at)} ago"
    )
    lines.extend(_next_steps(item))
    return "\n".join(lines)


def _dep(number: int, dep: Item | None) -> str:
    if dep is None:
        return f"#{number} (gone)"
    return f"{dep.label} ({stage_name(dep.stage)}{'' if is_met(dep) else ', not done'})"


def render_history(entries: Iterable[HistoryEntry], timezone: str) -> str:
    """``show N``'s history: one ``2025-05-01 14:03 UTC alice (web:lobby): …`` line per op."""
    try:
        zone = ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        zone = ZoneInfo("UTC")
    lines = ["History:"]
    for entry in entries:
        when = datetime.fromtimestamp(entry.ts, zone).strftime("%Y-%m-%d %H:%M %Z")
        lines.append(f"  {when} {entry.origin.describe()}: {entry.summary}")
    return "\n".join(lines)


def render_projects(
    projects: Sequence[ProjectRecord],
    active: str | None,
    counts: Mapping[str, Mapping[Column, int]],
) -> str:
    """``projects``: one line per project with its items per column, the room's marked."""
    if not projects:
        return "No projects yet."
    lines = ["Projects:"]
    for p in projects:
        mark = " (this room)" if p.name == active else ""
        per = counts.get(p.name, {})
        items = ", ".join(f"{col.value} {per[col]}" for col, _ in BOARD if per.get(col))
        lines.append(
            f"  {p.name}{mark} — {p.path}, {p.stack}, branch {p.base_branch}, {p.timezone};"
            f" {items or 'no items'}"
        )
    lines.append("Change this room's project with `switch <project>`.")
    return "\n".join(lines)


def summary_line(project: str, items: Sequence[Item], active: bool) -> str:
    """``all_status``: ``demo: backlog 2 · coding 1 · qa 0 · merge 0 · done 1 · closed 0``."""
    counts = {col: 0 for col, _ in BOARD}
    for item in items:
        col = column(item.stage)
        if col in counts:
            counts[col] += 1
    mark = " (this room)" if active else ""
    return f"{project}{mark}: " + " · ".join(f"{col.value} {n}" for col, n in counts.items())


def agent_line(item: Item, run: AgentRun | None) -> str | None:
    """``status N``'s agent line: queued, running, rate-limited, failed or completed."""
    if run is None:
        waiting = isinstance(item.stage, Coding)
        return "Agent: queued (waiting for a free agent slot)" if waiting else None
    spent = f", ${run.cost_usd:.2f} spent" if run.cost_usd else ""
    match run.state:
        case "pending" | "running":
            took = age(time.time() - run.started)
            where = f" on {run.node}" if run.node.startswith("agent:") else ""  # a build node
            return f"Agent: {run.profile} {run.state}{where} for {took}, {run.turns} turns{spent}"
        case "rate_limited":
            until = time.strftime("%H:%M UTC", time.gmtime(run.resume_at or 0))
            return f"Agent: {run.profile} rate-limited until {until}{spent}"
        case "failed":
            why = run.reason.strip().splitlines()[-1][:160] if run.reason.strip() else "failed"
            return f"Agent: {run.profile} failed (attempt {run.attempts}): {why}{spent}"
    return f"Agent: {run.profile} {run.state}{spent}"
