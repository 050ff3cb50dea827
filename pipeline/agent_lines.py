"""What rooms are told of an item's agent ops (A1, K3): the announcer's lines for a build
node's work, and ``logs N`` of an item another node worked."""

from __future__ import annotations

import time

from pipeline.agent_ops import AgentProgress, ClaimAgent, EndAgent
from pipeline.agent_rows import AgentRun
from pipeline.store import OpStore

AgentChange = ClaimAgent | AgentProgress | EndAgent


def agent_line(
    change: AgentChange, run: AgentRun | None, claim_ttl_s: float | None = None
) -> str | None:
    """What the rooms are told of a build node's agent op (``run``: the item's row now,
    for the profile and role), or None."""
    profile = change.profile if isinstance(change, ClaimAgent) else run.profile if run else "-"
    who = f"#{change.number} agent {profile}"
    match change:
        case ClaimAgent(node=node, takeover=str(old)):
            silent = f"silent for {claim_ttl_s:.0f} s" if claim_ttl_s else "silent too long"
            return (f"#{change.number}: {node} took over from {old} ({silent});"
                    " continuing from its pushed commits")  # fmt: skip
        case ClaimAgent(node=node, attempts=0, resume=False):
            return f"{who}: started on {node}"
        case AgentProgress(fields=fields) if fields.get("note"):
            return f"{who}: {fields['note']}"
        case EndAgent(state="completed"):
            return f"{who}: {'review finished' if run and run.role == 'qa' else 'gates passed'}"
        case EndAgent(state="rate_limited", resume_at=float() | int() as at):
            return f"{who}: rate-limited until {time.strftime('%H:%M UTC', time.gmtime(at))}"
        case EndAgent(state="failed", reason=reason, attempts=attempts):
            first = reason.strip().splitlines()[0].rstrip(":") if reason.strip() else "failed"
            if first.startswith("stopped"):
                return f"{who}: {first[:160]}"
            return f"{who}: attempt {max(attempts, 1)} failed: {first[:160]}"
    return None


async def told_by_node(store: OpStore, run: AgentRun, label: str, most: int) -> str:
    """``logs N`` of an item whose agent ran on another node: its output stays on that
    machine; what the op log holds of it (start, notable lines, ends) is shown instead."""
    said = []
    for applied in await store.item_ops(run.project, run.item):
        change = applied.change
        if isinstance(change, ClaimAgent | AgentProgress | EndAgent):
            line = agent_line(change, run)
            if line is not None:
                said.append(f"{time.strftime('%H:%M:%S', time.gmtime(applied.op.ts))} {line}")
    verb = "runs" if run.active else "ran"
    where = (f"{label}'s agent {verb} on {run.node}: its full output is in"
             f" agent-logs/{run.project}/{run.item}.log under that node's --workdir.")  # fmt: skip
    if not said:
        return where
    return f"{where}\nWhat it told the rooms:\n" + "\n".join(said[-most:])
