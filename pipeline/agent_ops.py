"""The ops of an item's agent execution state (A2): claim, progress, end, clear.

One row per item in ``agent_runs`` (see :mod:`pipeline.agent_rows`), written only by
these ops in their own transaction. The states: ``pending`` (claimed, not yet spawned) →
``running`` (pid, started, heartbeat, session id) → ``completed`` (exit, cost) |
``rate_limited`` (resume_at) | ``failed`` (reason). A daemon stopped with agents running
leaves their rows ``running`` (parked); its reconciler resumes them after the restart.

    kind            columns (project, item)  payload keys
    agent.claim     project, number          profile, role, node, attempts, resume,
                                             [takeover] (the node whose claim lapsed)
    agent.progress  project, number          some of pid, session_id, turns, note; [node]
    agent.end       project, number          state, exit, reason, resume_at, attempts,
                                             cost_usd (this run's spend); [node]
    agent.clear     project, number          {}

``agent.claim`` is the one-agent-per-item claim: it is refused while the item's row is
``pending`` or ``running`` unless ``resume`` (the reconciler taking back a parked run of
the same node) or ``takeover`` names the node that holds it (a build node taking over the
claim of a node that stopped heartbeating for ``[store] claim_ttl_s``; whether it did is
the claimant's check, made just before, see :mod:`bot.claim_ttl`). A ``node`` on
``agent.progress``/``agent.end`` is the fencing token: the op is refused unless that node
holds the row, so a node whose claim was taken over cannot write over the new owner's run
(an ``agent.end`` without ``node`` is an admin's ``stop``, accepted from anyone).
A ``note`` on ``agent.progress`` is a build node's notable line for the rooms (a tool use,
a rate limit; at most one per ``TELL_EVERY_S``), which a chat daemon tells them
(:mod:`bot.announcer`); it changes no row.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Self

from pipeline.errors import (
    PipelineError,
    require_count,
    require_finite,
    require_positive,
    require_string,
    require_text,
)
from pipeline.op_fields import keys, project_name

ROLES = ("coder", "qa", "merger")
ACTIVE = ("pending", "running")
ENDINGS = ("completed", "failed", "rate_limited")
PROGRESS_KEYS = frozenset({"pid", "session_id", "turns", "note"})


def _cost(value: object) -> float:
    cost = float(require_finite(value, "cost_usd"))
    if cost < 0:
        raise PipelineError(f"cost_usd must not be negative, got {cost}")
    return cost


def _node(value: object) -> None:
    if value is not None:
        require_text(value, "node", limit=200)


def _with_node(payload: dict[str, Any], node: str | None) -> dict[str, Any]:
    """``payload`` with the fencing ``node`` when there is one (older ops have none)."""
    return payload if node is None else {**payload, "node": node}


@dataclass(frozen=True, slots=True)
class ClaimAgent:
    """Claim item ``number`` for an agent of ``profile`` (state ``pending``)."""

    KIND: ClassVar[str] = "agent.claim"
    project: str
    number: int
    profile: str
    role: str
    node: str
    attempts: int = 0
    resume: bool = False
    takeover: str | None = None

    def __post_init__(self) -> None:
        project_name(self.project)
        require_positive(self.number, "item number")
        require_text(self.profile, "profile", spaces=False, limit=64)
        require_text(self.node, "node", limit=200)
        if self.takeover is not None:
            require_text(self.takeover, "takeover", limit=200)
        require_count(self.attempts, "attempts")
        if self.role not in ROLES:
            raise PipelineError(f"role must be one of {', '.join(ROLES)}, got {self.role!r}")
        if not isinstance(self.resume, bool):
            raise PipelineError(f"resume must be true or false, got {self.resume!r}")

    def columns(self) -> tuple[str | None, int | None]:
        return self.project, self.number

    def to_payload(self) -> dict[str, Any]:
        payload = {"profile": self.profile, "role": self.role, "node": self.node,
                   "attempts": self.attempts, "resume": self.resume}  # fmt: skip
        return payload if self.takeover is None else {**payload, "takeover": self.takeover}

    @classmethod
    def from_payload(cls, project: str | None, item: int | None, p: Mapping[str, Any]) -> Self:
        keys(p, {"profile", "role", "node", "attempts", "resume"}, frozenset({"takeover"}))
        return cls(project_name(project), require_positive(item, "item number"), p["profile"],
                   p["role"], p["node"], p["attempts"], p["resume"],
                   p.get("takeover"))  # fmt: skip


@dataclass(frozen=True, slots=True)
class AgentProgress:
    """What a running agent reported: its pid, session id and turns so far."""

    KIND: ClassVar[str] = "agent.progress"
    project: str
    number: int
    fields: Mapping[str, Any]
    node: str | None = None

    def __post_init__(self) -> None:
        project_name(self.project)
        require_positive(self.number, "item number")
        _node(self.node)
        if not self.fields or not set(self.fields) <= PROGRESS_KEYS:
            raise PipelineError(f"agent.progress takes some of {sorted(PROGRESS_KEYS)}")
        checked = dict(self.fields)
        if "pid" in checked:
            require_positive(checked["pid"], "pid")
        if "session_id" in checked:
            require_text(checked["session_id"], "session id", spaces=False, limit=200)
        if "turns" in checked:
            require_count(checked["turns"], "turns")
        if "note" in checked:
            require_text(checked["note"], "note", limit=200)
        object.__setattr__(self, "fields", checked)

    def columns(self) -> tuple[str | None, int | None]:
        return self.project, self.number

    def to_payload(self) -> dict[str, Any]:
        return _with_node(dict(self.fields), self.node)

    @classmethod
    def from_payload(cls, project: str | None, item: int | None, p: Mapping[str, Any]) -> Self:
        keys(p, set(), PROGRESS_KEYS | {"node"})
        fields = {k: v for k, v in p.items() if k != "node"}
        return cls(project_name(project), require_positive(item, "item number"), fields,
                   p.get("node"))  # fmt: skip


@dataclass(frozen=True, slots=True)
class EndAgent:
    """The agent's process is gone (verified): how its run ended."""

    KIND: ClassVar[str] = "agent.end"
    project: str
    number: int
    state: str
    exit: int | None = None
    reason: str = ""
    resume_at: float | None = None
    attempts: int = 0
    cost_usd: float = 0.0
    node: str | None = None

    def __post_init__(self) -> None:
        project_name(self.project)
        require_positive(self.number, "item number")
        _node(self.node)
        if self.state not in ENDINGS:
            raise PipelineError(f"state must be one of {', '.join(ENDINGS)}, got {self.state!r}")
        if self.exit is not None and (
            isinstance(self.exit, bool) or not isinstance(self.exit, int)
        ):
            raise PipelineError(f"exit must be an integer or null, got {self.exit!r}")
        require_string(self.reason, "reason")
        if self.resume_at is not None:
            require_finite(self.resume_at, "resume_at")
        require_count(self.attempts, "attempts")
        object.__setattr__(self, "cost_usd", _cost(self.cost_usd))

    def columns(self) -> tuple[str | None, int | None]:
        return self.project, self.number

    def to_payload(self) -> dict[str, Any]:
        return _with_node({"state": self.state, "exit": self.exit, "reason": self.reason[-4000:],
                "resume_at": None if self.resume_at is None else float(self.resume_at),
                "attempts": self.attempts, "cost_usd": self.cost_usd}, self.node)  # fmt: skip

    @classmethod
    def from_payload(cls, project: str | None, item: int | None, p: Mapping[str, Any]) -> Self:
        keys(p, {"state", "exit", "reason", "resume_at", "attempts", "cost_usd"},
             frozenset({"node"}))  # fmt: skip
        return cls(project_name(project), require_positive(item, "item number"), p["state"],
                   p["exit"], p["reason"], p["resume_at"], p["attempts"],
                   p["cost_usd"], p.get("node"))  # fmt: skip


@dataclass(frozen=True, slots=True)
class ClearAgent:
    """Forget the item's execution state (its agent is gone). Idempotent."""

    KIND: ClassVar[str] = "agent.clear"
    project: str
    number: int

    def __post_init__(self) -> None:
        project_name(self.project)
        require_positive(self.number, "item number")

    def columns(self) -> tuple[str | None, int | None]:
        return self.project, self.number

    def to_payload(self) -> dict[str, Any]:
        return {}

    @classmethod
    def from_payload(cls, project: str | None, item: int | None, p: Mapping[str, Any]) -> Self:
        keys(p, set())
        return cls(project_name(project), require_positive(item, "item number"))


AGENT_CHANGES = (ClaimAgent, AgentProgress, EndAgent, ClearAgent)
