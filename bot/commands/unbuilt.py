"""Verbs DESIGN.md C2 names that this version does not have yet: each answers "not available
yet" at once instead of reaching the LLM as free text.

This is the one table of them. A later change that builds one registers the real command
first (see :func:`bot.commands.catalogue.build_registry`) and deletes its row here; a row whose
name is already registered is skipped, so the two never clash.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Annotated

from pydantic import Field

from bot.commands.args import Args, Verbatim
from bot.commands.registry import Command, CommandContext, Registry
from bot.messages import Reply

UNBUILT: tuple[tuple[str, str], ...] = ()
"""``(name, usage)`` of each verb that is named by the design but not built yet."""


class AnyWords(Args):
    words: Annotated[str, Verbatim, Field(description="anything")] = ""


def not_available(usage: str) -> Reply:
    """The reply of a verb that is not built yet."""
    return Reply(f"`{usage}` is not available yet in this version of musher. Try `help`.")


def register_unbuilt(registry: Registry) -> None:
    """Add every row of :data:`UNBUILT` not registered already."""
    for name, usage in UNBUILT:
        if registry.get(name) is not None:
            continue
        command = Command(name, "Not available yet", usage, _answer(usage), AnyWords)
        registry.add(replace(command, tool=False, listed=False))


def _answer(usage: str) -> Callable[[CommandContext, AnyWords], Awaitable[Reply]]:
    async def handler(ctx: CommandContext, args: AnyWords) -> Reply:
        return not_available(usage)

    return handler
