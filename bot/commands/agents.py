"""The agent commands (C2, A1): ``start N [agent]``, ``assign N <agent>``, ``agents
[--all]``, ``logs N [lines]``, ``cleanup_worktrees [--confirm]`` (``stop N`` is ``stop``'s).

Parts the handlers name: ``rooms`` (the room's project) and ``agents`` (the
:class:`~pipeline.agents.pool.AgentPool`).
"""

from __future__ import annotations

import time
from typing import Annotated

from pydantic import Field

from bot.commands.args import Args, Flag, ItemNumber
from bot.commands.board import age
from bot.commands.pipeline import RoomProjects
from bot.commands.registry import CommandContext, Permission, Registry
from bot.messages import Reply
from pipeline.agent_lines import told_by_node
from pipeline.agent_rows import AgentRun
from pipeline.agents.pool import AgentPool, AgentView


class StartArgs(Args):
    number: ItemNumber
    agent: Annotated[str | None, Field(description="an agent profile", max_length=64)] = None


class AssignArgs(Args):
    number: ItemNumber
    agent: Annotated[str, Field(description="an agent profile", max_length=64)]


class AgentsArgs(Args):
    all: Annotated[bool, Flag("--all"), Field(description="pids and profiles too")] = False


class LogsArgs(Args):
    number: ItemNumber
    lines: Annotated[int, Field(ge=1, le=500, description="how many lines")] = 20


class CleanupArgs(Args):
    confirm: Annotated[bool, Flag("--confirm"), Field(description="remove them")] = False


def register_agents(registry: Registry) -> None:
    """Add the agent commands to ``registry``."""

    @registry.command(
        "start", summary="Put an agent on an item now (or queue it)", usage="start N [agent]",
        args=StartArgs, permission=Permission.ADMIN,
    )  # fmt: skip
    async def start(
        ctx: CommandContext, args: StartArgs, *, rooms: RoomProjects, agents: AgentPool
    ) -> Reply:
        _, project = await rooms.room_project(ctx)
        return Reply(await agents.start(project, args.number, args.agent, ctx.origin))

    @registry.command(
        "assign", summary="Give an item to a named agent profile", usage="assign N <agent>",
        args=AssignArgs, permission=Permission.ADMIN,
    )  # fmt: skip
    async def assign(
        ctx: CommandContext, args: AssignArgs, *, rooms: RoomProjects, agents: AgentPool
    ) -> Reply:
        _, project = await rooms.room_project(ctx)
        await agents.stop_item(project, args.number, ctx.origin)
        return Reply(await agents.start(project, args.number, args.agent, ctx.origin))

    @registry.command(
        "agents", summary="Running and queued agents", usage="agents [--all]", args=AgentsArgs
    )
    async def agents_(ctx: CommandContext, args: AgentsArgs, *, agents: AgentPool) -> Reply:
        return Reply(render_agents(agents.views() + await other_nodes(agents), args.all))

    @registry.command(
        "logs", summary="An item's recent agent output", usage="logs N [lines]", args=LogsArgs
    )
    async def logs(
        ctx: CommandContext, args: LogsArgs, *, rooms: RoomProjects, agents: AgentPool
    ) -> Reply:
        engine, project = await rooms.room_project(ctx)
        item = await engine.lookup(project, args.number)
        run = await engine.store.agent_run(project, item.number)
        if run is not None and run.node != agents.parts.node:  # another node's agent
            return Reply(await told_by_node(engine.store, run, item.label, args.lines))
        lines = agents.logs(project, item.number, args.lines)
        if not lines:
            return Reply(f"{item.label} has no agent output yet.")
        return Reply(f"Agent output of {item.label}:\n" + "\n".join(lines))

    @registry.command(
        "cleanup_worktrees", summary="Remove worktrees no item needs (dry run without --confirm)",
        usage="cleanup_worktrees [--confirm]", args=CleanupArgs, permission=Permission.ADMIN,
    )  # fmt: skip
    async def cleanup(ctx: CommandContext, args: CleanupArgs, *, agents: AgentPool) -> Reply:
        return Reply(await agents.cleanup(args.confirm))


async def other_nodes(pool: AgentPool) -> list[AgentView]:
    """The agents other nodes (build nodes, other daemons) run now, from the store (K3)."""
    now, mine = time.time(), pool.parts.node
    runs = [r for r in await pool.engine.store.agent_runs() if r.active and r.node != mine]
    return [_remote_view(r, now) for r in runs]


def _remote_view(r: AgentRun, now: float) -> AgentView:
    return AgentView(r.project, r.item, r.profile, "running", r.pid, now - r.started, r.turns,
                     r.cost_usd, f"on {r.node}")  # fmt: skip


def render_agents(views: list[AgentView], full: bool) -> str:
    """``agents``: one line per running, rate-limited or queued agent."""
    if not views:
        return "No agents running or queued."
    lines = []
    for v in views:
        where = f"{v.project} #{v.number}"
        if v.state != "running":
            lines.append(f"{where}: {v.state}" + (f" ({v.profile})" if full else ""))
            continue
        head = (
            f"{where}: {v.profile} running {age(v.runtime_s)}, {v.turns} turns, ${v.cost_usd:.2f}"
        )
        if full:
            head += f", pid {v.pid}"
        lines.append(head + (f" — {v.last[:120]}" if v.last else ""))
    return "\n".join(lines)
