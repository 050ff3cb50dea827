"""Pipeline events waiting for a room's next LLM turn (D4), drained once into its prompt."""

from __future__ import annotations

from collections import defaultdict, deque
from collections.abc import Sequence

MAX_LINES = 200  # per room; older lines are dropped with a note, the prompt stays bounded


def audit_line(ts: float, project: str, item: int, from_: str, to: str, by: str) -> str:
    """``audit ts=… project=… item=… from=… to=… by=…`` (values without spaces)."""
    fields = {"ts": f"{ts:.0f}", "project": project, "item": str(item), "from": from_, "to": to}
    fields["by"] = by
    return "audit " + " ".join(f"{k}={v.replace(' ', '_')}" for k, v in fields.items())


class AuditBuffer:
    """Per-session queues of audit lines. Bounded; a drained line is never given twice."""

    def __init__(self) -> None:
        self._lines: defaultdict[str, deque[str]] = defaultdict(lambda: deque(maxlen=MAX_LINES))
        self._dropped: defaultdict[str, int] = defaultdict(int)

    def push(self, session: str, line: str) -> None:
        queue = self._lines[session]
        if len(queue) == queue.maxlen:
            self._dropped[session] += 1
        queue.append(line)

    def drain(self, session: str) -> list[str]:
        """Every line since the last drain, oldest first (and how many were dropped)."""
        queue = self._lines.pop(session, None)
        dropped = self._dropped.pop(session, 0)
        lines = list(queue or ())
        if dropped:
            lines.insert(0, f"audit note={dropped}_older_events_dropped")
        return lines

    def restore(self, session: str, lines: Sequence[str]) -> None:
        """Put drained lines back in front (the turn that took them did not run)."""
        queue = self._lines[session]
        for line in reversed(lines):
            if len(queue) < MAX_LINES:
                queue.appendleft(line)
