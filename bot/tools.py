"""The command registry as LLM tools (L4): schemas from argument models, calls as the sender.

A tool call runs the command exactly as if the batch's senders had typed it: the same
registry, permission checks and replies. A batch from several people runs tools with the
least privilege among them, so a stranger's words can never borrow an admin's rights.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from bot.commands.registry import CommandContext, Permission, Registry
from bot.llm.base import CallTool, Tool


def tool_name(command_name: str) -> str:
    """``new project`` → ``new_project`` (tool names are identifiers)."""
    return command_name.replace(" ", "_")


def tools_for(registry: Registry, admin: bool) -> tuple[Tool, ...]:
    """The commands an LLM may call for a sender with (or without) admin rights.

    Built once per registry version and rights (schemas are costly to generate).
    """
    return registry.cached(("tools", admin), lambda: _build(registry, admin))


def _build(registry: Registry, admin: bool) -> tuple[Tool, ...]:
    tools = []
    for command in registry.commands():
        if not command.tool:
            continue
        if (command.permission is Permission.ADMIN or command.destructive) and not admin:
            continue
        schema = command.args.model_json_schema()
        schema.pop("title", None)
        tools.append(
            Tool(tool_name(command.name), f"{command.summary}. Usage: {command.usage}", schema)
        )
    return tuple(tools)


def tool_caller(registry: Registry, ctx: CommandContext, items: set[int] | None = None) -> CallTool:
    """A ``call_tool(name, arguments)`` that runs commands in ``ctx`` (``via="tool"``);
    the item numbers the calls name go into ``items`` (so a turn's cost can name its item)."""
    by_tool: dict[str, str] = registry.cached(
        ("tool names",), lambda: {tool_name(c.name): c.name for c in registry.commands() if c.tool}
    )

    async def call_tool(name: str, arguments: dict[str, Any]) -> str:
        command = by_tool.get(name)
        if command is None:
            return f"Unknown tool {name!r}."
        number = arguments.get("number") if isinstance(arguments, dict) else None
        if items is not None and isinstance(number, int) and not isinstance(number, bool):
            items.add(number)
        reply = await registry.invoke(command, arguments, ctx)
        return reply.text

    return call_tool


def batch_is_admin(senders: Sequence[bool]) -> bool:
    """Admin rights for a batch: only if every sender in it is an admin."""
    return bool(senders) and all(senders)
