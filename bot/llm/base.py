"""The provider protocol (L1) and the events a turn yields.

A provider turns one batch into a stream of :data:`TurnEvent`. It is cancelled by cancelling
the task iterating it (or by setting ``cancel``); a provider that owns processes must kill
them, verified, before its iterator finishes unwinding (L6).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from bot.messages import QueuedText


@dataclass(frozen=True, slots=True)
class Tool:
    """A command offered to the model as a function tool."""

    name: str
    description: str
    parameters: dict[str, Any]


CallTool = Callable[[str, dict[str, Any]], Awaitable[str]]


@dataclass(frozen=True, slots=True)
class Verdict:
    """The room's answer to a tool use (L7): allowed, or denied with what the model is told."""

    allow: bool
    message: str = ""


AskPermission = Callable[[str, dict[str, Any]], Awaitable[Verdict]]
"""``ask(tool, input)``: may the model use its own ``tool`` with ``input``? Asks the room."""


@dataclass(frozen=True, slots=True)
class TurnRequest:
    """Everything a provider needs for one turn.

    ``tools`` are the commands the sender may use; ``call_tool(name, arguments)`` runs one
    exactly as if the sender had typed it and returns the reply text. ``cwd`` is where a
    CLI provider runs (the room's active project, else the data dir). ``tool_access`` is
    ``[llm] tools`` (L7): with ``ask`` or ``project`` the model may also use file (and, on
    the CLI, shell) tools confined to ``cwd``, and ``ask_permission`` asks the room.
    ``steer`` (busy mode ``steer`` only) hands the turn what the room says meanwhile.
    """

    session: str
    prompt: str
    batch: tuple[QueuedText, ...]
    tools: tuple[Tool, ...] = ()
    call_tool: CallTool | None = None
    cwd: Path | None = None
    tool_access: str = "commands"
    ask_permission: AskPermission | None = None
    steer: Steer | None = None


class Steer(Protocol):
    """Messages from the room that arrive while the turn runs (busy mode ``steer``, D3).

    A provider takes them where the model can still read them; what it never takes is
    answered by a follow-up turn, so taking is optional but must not lose anything taken.
    """

    async def take(self) -> str | None:
        """Everything that arrived since the last take, as one prompt (None: nothing).

        What is returned now belongs to this turn: the provider must give it to the model.
        """
        ...

    async def wait(self) -> None:
        """Return once something has arrived (at once if something waits already)."""
        ...

    def close(self) -> None:
        """Take nothing more: what arrives from now on makes the follow-up turn."""
        ...


McpConfig = Callable[[TurnRequest], dict[str, Any] | None]
"""Builds the ``--mcp-config`` JSON for a CLI provider's turn (None: no MCP servers)."""


@dataclass(frozen=True, slots=True)
class TextDelta:
    text: str


@dataclass(frozen=True, slots=True)
class ToolCall:
    id: str
    name: str
    arguments: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ToolResult:
    id: str
    text: str


@dataclass(frozen=True, slots=True)
class Usage:
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0


@dataclass(frozen=True, slots=True)
class Done:
    """The turn ended; ``text`` is the final answer when it was not streamed as deltas."""

    text: str | None = None


@dataclass(frozen=True, slots=True)
class Failed:
    """The provider failed; ``message`` is shown in the room."""

    message: str


TurnEvent = TextDelta | ToolCall | ToolResult | Usage | Done | Failed


class Provider(Protocol):
    name: str

    def run(self, request: TurnRequest, cancel: asyncio.Event) -> AsyncGenerator[TurnEvent, None]:
        """Stream the events of one turn (an async generator, closed by the caller).

        Must stop promptly when cancelled or closed, releasing what it holds (processes,
        HTTP streams) before the close returns.
        """
        ...

    async def reset(self, session: str) -> None:
        """Forget the conversation of ``session``."""
        ...

    async def aclose(self) -> None: ...
