"""L5: a turn whose tool calls act on one item books its cost against that item."""

from __future__ import annotations

from bot.commands.catalogue import build_registry
from bot.commands.registry import CommandContext
from bot.tools import tool_caller


async def test_the_items_a_turns_tool_calls_name_are_collected() -> None:
    registry = build_registry()
    registry.provide(rooms=None)  # the calls fail inside; the numbers are noted before
    items: set[int] = set()
    call = tool_caller(registry, CommandContext("web:lobby", "alice", True, "tool"), items)

    await call("status", {"number": 3})
    await call("status", {})
    await call("nosuch", {"number": 9})

    assert items == {3}
