"""Read a coding agent's ``stream-json`` output (no I/O): session id, turns, cost, rate
limits, and short human lines for ``logs N`` and the rooms.

The format is the one ``claude -p --output-format stream-json --verbose`` prints (see
``bot/llm/claude_stream.py`` for chat turns): ``system``/``init`` carries the session id,
each ``assistant`` message is a turn (its ``tool_use`` blocks are tool calls), ``result``
carries ``total_cost_usd``, and ``rate_limit_event`` carries ``rate_limit_info`` whose
``status`` is a hard block unless it is ``allowed`` or ``allowed_warning`` (lesson 1103).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

SOFT_LIMITS = ("allowed", "allowed_warning")


@dataclass(slots=True)
class Seen:
    """What one line said: a line for the log, whether it is worth telling the rooms, and
    whether the session id was new."""

    log: str = ""
    notable: bool = False
    new_session: bool = False


@dataclass(slots=True)
class AgentStream:
    """The running totals of one agent process's output."""

    session_id: str | None = None
    turns: int = 0
    cost_usd: float = 0.0
    result: str | None = None
    result_error: bool = False
    rate_limited_until: float | None = None
    tools: list[str] = field(default_factory=list)

    def feed_line(self, text: str) -> Seen:
        """Take one output line (JSON or not) into the totals."""
        text = text.strip()
        if not text:
            return Seen()
        try:
            event = json.loads(text)
        except ValueError:
            event = None
        if not isinstance(event, dict):
            return Seen(log=text[:300])
        return self.feed(event)

    def feed(self, event: dict[str, Any]) -> Seen:
        kind = event.get("type")
        if kind == "system" and event.get("subtype") == "init":
            session = event.get("session_id")
            if isinstance(session, str) and session and session != self.session_id:
                self.session_id = session
                return Seen(log=f"session {session}", new_session=True)
            return Seen()
        if kind == "assistant":
            return self._assistant(event)
        if kind == "result":
            return self._result(event)
        if kind == "rate_limit_event":
            return self._rate_limit(event)
        return Seen()

    def _assistant(self, event: dict[str, Any]) -> Seen:
        self.turns += 1
        message = event.get("message")
        blocks = message.get("content") if isinstance(message, dict) else None
        lines, notable = [], False
        for block in blocks if isinstance(blocks, list) else []:
            if not isinstance(block, dict):
                continue
            if block.get("type") == "text" and isinstance(block.get("text"), str):
                lines.append(block["text"].strip().replace("\n", " ")[:200])
            elif block.get("type") == "tool_use":
                name = str(block.get("name", "tool"))
                self.tools.append(name)
                lines.append(f"tool {name}: {_brief(block.get('input'))}")
                notable = True
        return Seen(log=" | ".join(line for line in lines if line), notable=notable)

    def _result(self, event: dict[str, Any]) -> Seen:
        cost = event.get("total_cost_usd")
        if isinstance(cost, int | float) and not isinstance(cost, bool) and cost >= 0:
            self.cost_usd = float(cost)
        turns = event.get("num_turns")
        if isinstance(turns, int) and not isinstance(turns, bool) and turns > self.turns:
            self.turns = turns
        text = event.get("result")
        self.result = text if isinstance(text, str) else ""
        self.result_error = bool(event.get("is_error"))
        return Seen(log=f"result: {self.result.strip()[:200]} (${self.cost_usd:.4f})")

    def _rate_limit(self, event: dict[str, Any]) -> Seen:
        info = event.get("rate_limit_info")
        info = info if isinstance(info, dict) else {}
        status = str(info.get("status") or "")
        if not status or status in SOFT_LIMITS:
            return Seen()
        self.rate_limited_until = _when(info.get("reset_at") or info.get("resetsAt"))
        return Seen(log=f"rate limited ({status}) until {info.get('reset_at')}", notable=True)


def _brief(value: object) -> str:
    if isinstance(value, dict):
        for key in ("command", "file_path", "path", "pattern", "description"):
            if isinstance(value.get(key), str):
                return str(value[key]).replace("\n", " ")[:120]
    return json.dumps(value)[:120] if value is not None else ""


def _when(value: object) -> float:
    """``reset_at`` as unix time: a number, or an ISO 8601 text; 0 when unreadable."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
        except ValueError:
            return 0.0
    return 0.0
