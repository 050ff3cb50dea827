"""An item's history for ``show N``: its ops from the log, each as who did what, and when."""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from pipeline.canonical import loads
from pipeline.errors import PipelineError
from pipeline.model import Origin, stage_name
from pipeline.ops import AddTimer, Change, CreateItem, PurgeItem, UpdateItem
from pipeline.store import AppliedOp


@dataclass(frozen=True, slots=True)
class HistoryEntry:
    """One op of an item's history: its kind, who, when (unix time) and what it changed."""

    kind: str
    origin: Origin
    ts: float
    summary: str


def history_of(ops: Iterable[AppliedOp]) -> list[HistoryEntry]:
    """One entry per op, in the given (log) order.

    Each update is described against the state the earlier ops left, so a stage change
    reads ``stage backlog → coding`` although the op stores only the new stage.
    """
    state: dict[str, Any] = {}
    entries = []
    for applied in ops:
        op = applied.op
        origin = loads(op.origin)
        if not isinstance(origin, dict):
            raise PipelineError("an op origin must be a JSON object")
        summary = _summary(applied.change, state)
        entries.append(HistoryEntry(op.kind, Origin.from_dict(origin), op.ts, summary))
    return entries


def numbers(values: Iterable[int]) -> str:
    """``#3, #4``, or ``nothing`` for none."""
    return ", ".join(f"#{n}" for n in values) or "nothing"


def _shown(field: str, value: Any) -> str:
    if field == "stage":
        return stage_name(value)
    if field == "depends_on":
        return numbers(value)
    if field == "epic":
        return "none" if value is None else f"#{value}"
    if field == "body":
        return f"{len(value)} characters"
    return repr(value) if isinstance(value, str) else str(value)


def _summary(change: Change, state: dict[str, Any]) -> str:
    """What one op did to the item, given (and updating) the item's state so far."""
    match change:
        case CreateItem(item=item):
            state.update(stage=item.stage, title=item.title, body=item.body,
                         depends_on=item.depends_on, epic=item.epic,
                         retries=item.retries)  # fmt: skip
            extra = f", depends on {numbers(item.depends_on)}" if item.depends_on else ""
            return f"created {item.kind.value} {item.title!r} in {stage_name(item.stage)}{extra}"
        case UpdateItem():
            parts = []
            for field, value in change.changes().items():
                old = f"{_shown(field, state[field])} " if field in state else ""
                parts.append(f"{field} {old}→ {_shown(field, value)}")
                state[field] = value
            return ", ".join(parts)
        case PurgeItem():
            return "purged"
        case AddTimer():
            when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(change.fire_at))
            return f"timer {change.id} set for {when}"
        case _:
            return change.KIND
