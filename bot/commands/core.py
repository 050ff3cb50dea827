"""The commands of the daemon itself (C5): ``help``, ``stop [N]``, ``reset``, ``ambient``, ``cost``.

Parts the handlers name (see :mod:`bot.commands.registry`): ``stop_session`` (cancel a
session's turn and drop its queue), ``stop_item`` (``stop N``: stop an item's agent),
``reset_session`` (forget its LLM conversation),
``engine`` (``ambient`` is a room setting: a ``room.set`` op, read back from the rooms
table) and ``cost_report``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, Literal

from pydantic import Field

from bot.commands.args import Args, ItemNumber, NoArgs
from bot.commands.registry import CommandContext, Permission, Registry
from bot.messages import Reply, Session
from pipeline.engine import Engine

SessionAction = Callable[[Session], Awaitable[object]]
StopItem = Callable[[CommandContext, int], Awaitable[str]]
"""``stop N``: stop item N's agent in the room's project; returns the reply."""
CostReport = Callable[[], Awaitable[str]]
NodeReport = Callable[[], Awaitable[str]]


class HelpArgs(Args):
    command: Annotated[str | None, Field(description="a command to explain")] = None


class StopArgs(Args):
    number: Annotated[ItemNumber | None, Field(description="stop an item's agent")] = None


class AmbientArgs(Args):
    mode: Annotated[Literal["on", "off"], Field(description="answer without a mention?")]


def register_core(registry: Registry) -> None:
    """Add the daemon's own commands to ``registry``."""

    @registry.command(
        "help", summary="List commands, or explain one", usage="help [cmd]", args=HelpArgs
    )
    async def help_(ctx: CommandContext, args: HelpArgs) -> Reply:
        return Reply(render_help(registry, args.command, ctx.admin))

    @registry.command(
        "stop",
        summary="Cancel the room's running answer and drop queued messages",
        usage="stop",
        args=StopArgs,
        tool=False,
    )
    async def stop(
        ctx: CommandContext, args: StopArgs, *, stop_session: SessionAction, stop_item: StopItem
    ) -> Reply:
        if args.number is not None:
            return Reply(await stop_item(ctx, args.number))
        await stop_session(ctx.session)
        return Reply("Stopped.")

    @registry.command(
        "reset",
        summary="Forget this room's LLM conversation",
        usage="reset",
        args=NoArgs,
        tool=False,
    )
    async def reset(ctx: CommandContext, args: NoArgs, *, reset_session: SessionAction) -> Reply:
        await reset_session(ctx.session)
        return Reply("Conversation reset: the next message starts a new one.")

    @registry.command(
        "ambient",
        summary="Answer every message in this room (on) or only mentions (off)",
        usage="ambient on|off",
        args=AmbientArgs,
    )
    async def ambient(ctx: CommandContext, args: AmbientArgs, *, engine: Engine) -> Reply:
        on = args.mode == "on"
        await engine.set_ambient(ctx.session, on, ctx.origin)
        if on:
            return Reply("Ambient mode on: I'll read every message in this room.")
        return Reply("Ambient mode off: mention me to get my attention.")

    register_cost(registry)
    register_nodes(registry)


def register_cost(registry: Registry) -> None:
    """``cost``: LLM spend over the last 24 hours (L5)."""

    @registry.command(
        "cost", summary="LLM spend: 24 h total, top rooms and items", usage="cost", args=NoArgs
    )
    async def cost(ctx: CommandContext, args: NoArgs, *, cost_report: CostReport) -> Reply:
        return Reply(await cost_report())


def register_nodes(registry: Registry) -> None:
    """``nodes``: the nodes sharing this store, their heartbeats and leases (K2)."""

    @registry.command(
        "nodes", summary="The nodes sharing this store: heartbeats, leases", usage="nodes",
        args=NoArgs,
    )  # fmt: skip
    async def nodes(ctx: CommandContext, args: NoArgs, *, node_report: NodeReport) -> Reply:
        return Reply(await node_report())


def render_help(registry: Registry, name: str | None, admin: bool) -> str:
    """The command list, or one command's usage and summary."""
    if name:
        command = registry.get(name)
        if command is None:
            return f"No command {name!r}. Try `help` for the list."
        lines = [f"Usage: {command.usage}", command.summary]
        if command.aliases:
            lines.append("Aliases: " + ", ".join(command.aliases))
        if command.permission is Permission.ADMIN:
            lines.append("Admins only.")
        return "\n".join(lines)
    lines = ["Commands:"]
    for command in registry.commands():
        marker = " (admin)" if command.permission is Permission.ADMIN else ""
        lines.append(f"  {command.usage} — {command.summary}{marker}")
    lines.append("Anything else is sent to the LLM.")
    return "\n".join(lines)
