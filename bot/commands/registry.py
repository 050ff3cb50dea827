"""The one command registry (C1): chat text, slash commands, the web API, MCP and LLM tools.

A :class:`Command` has a name (one or two words: ``move``, ``new project``), aliases, a
one-line summary, a usage line, an argument model, a permission level and an async handler
returning a :class:`~bot.messages.Reply`. :meth:`Registry.invoke` is the only way a command
runs: it checks permission, validates arguments and turns every failure into a reply, so a
bad call never crashes and never half-applies (C4).

A handler is ``async def handler(ctx, args, *, engine: Engine, ...)``: its keyword-only
parameters name the daemon parts it uses, and the registry passes exactly those, by name,
from what the composition root gave :meth:`Registry.provide`. So the catalogue of commands
exists without a running daemon (the Slack manifest), and a handler sees nothing else.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Awaitable, Callable, Hashable, Iterable, Mapping
from dataclasses import dataclass, replace
from enum import IntEnum
from typing import Any, TypeVar, cast

from pydantic import ValidationError

from bot.commands.args import Args, parse_args, split_words, usage_message
from bot.messages import Reply, Session
from config.errors import AccessDenied, MusherError, UsageError
from pipeline.errors import PipelineError
from pipeline.model import UserOrigin

log = logging.getLogger("musher.commands")
T = TypeVar("T")


class Permission(IntEnum):
    USER = 0
    ADMIN = 1


@dataclass(frozen=True, slots=True)
class CommandContext:
    """Who runs a command, where and how: nothing else.

    Handlers get the daemon parts they use when they are registered (``register_*``
    functions take them by name), never through the context.
    """

    session: Session
    sender: str
    admin: bool
    via: str = "chat"  # "chat" | "api" | "tool"

    def __post_init__(self) -> None:
        object.__setattr__(self, "session", Session.of(self.session))

    @property
    def transport(self) -> str:
        return self.session.transport

    @property
    def room(self) -> str:
        """The room as its transport names it (a thread included)."""
        return self.session.address

    @property
    def origin(self) -> UserOrigin:
        """Who to credit in the op log (S2): this sender, in this room."""
        return UserOrigin(self.transport, self.sender, self.room)


Handler = Callable[..., Awaitable[Reply]]
"""``handler(ctx, args, **dependencies)``: see the module docstring."""


def dependencies_of(handler: Handler) -> tuple[str, ...]:
    """The names of ``handler``'s keyword-only parameters: the parts it asks for."""
    params = inspect.signature(handler).parameters.values()
    return tuple(p.name for p in params if p.kind is inspect.Parameter.KEYWORD_ONLY)


@dataclass(frozen=True, slots=True)
class Command:
    name: str
    summary: str
    usage: str
    handler: Handler
    args: type[Args]
    aliases: tuple[str, ...] = ()
    permission: Permission = Permission.USER
    destructive: bool = False  # an LLM may call it only on an admin's behalf (L4)
    tool: bool = True  # offered to the LLM (not `stop`/`reset`, which act on the LLM itself)
    needs: tuple[str, ...] = ()  # the daemon parts its handler takes, by name
    listed: bool = True  # in `help`, the Slack manifest, the tools (not the unbuilt verbs)


@dataclass(frozen=True, slots=True)
class Invocation:
    """A message recognised as a command: which one and the words after its name."""

    command: Command
    words: list[str]


class Registry:
    """Commands by name and alias; two-word names win over one-word ones."""

    def __init__(self) -> None:
        self._by_name: dict[str, Command] = {}
        self._commands: list[Command] = []
        self._first_words: set[str] = set()
        self._derived: dict[Hashable, Any] = {}
        self._parts: dict[str, object] = {}

    def provide(self, **parts: object) -> None:
        """Make daemon parts available to the handlers that name them (adds or replaces)."""
        self._parts.update(parts)

    def missing(self) -> list[str]:
        """``command: part`` for every part a registered handler needs but nobody provided."""
        return [f"{c.name}: {n}" for c in self._commands for n in c.needs if n not in self._parts]

    def add(self, command: Command) -> None:
        for key in (command.name, *command.aliases):
            key = key.lower()
            if key in self._by_name:
                raise ValueError(f"command name {key!r} is registered twice")
            self._by_name[key] = command
            self._first_words.add(key.split()[0])
        self._commands.append(command)
        self._derived.clear()

    def cached(self, key: Hashable, build: Callable[[], T]) -> T:
        """``build()`` once per ``key`` until the next command is added (tool schemas)."""
        if key not in self._derived:
            self._derived[key] = build()
        return cast(T, self._derived[key])

    def command(
        self,
        name: str,
        *,
        summary: str,
        usage: str,
        args: type[Args],
        aliases: Iterable[str] = (),
        permission: Permission = Permission.USER,
        destructive: bool = False,
        tool: bool = True,
    ) -> Callable[[Handler], Handler]:
        """Decorator registering ``handler`` as the command ``name``."""

        def register(handler: Handler) -> Handler:
            command = Command(name, summary, usage, handler, args, tuple(aliases), permission)
            needs = dependencies_of(handler)
            self.add(replace(command, destructive=destructive, tool=tool, needs=needs))
            return handler

        return register

    def commands(self) -> list[Command]:
        """The listed commands, in registration order (``help``, Slack, tools)."""
        return [c for c in self._commands if c.listed]

    def get(self, name: str) -> Command | None:
        return self._by_name.get(name.lower())

    def match(self, text: str) -> Invocation | None:
        """The command ``text`` starts with (after an optional ``!`` or ``/``), if any."""
        head = text.split(maxsplit=1)
        if not head or head[0].lstrip("!/").lower() not in self._first_words:
            return None  # free text: no need to tokenize it
        words = split_words(text.strip())
        if not words:
            return None
        first = words[0]
        if first[:1] in "!/":
            first = first[1:]
        words = [first, *words[1:]]
        if len(words) >= 2:
            command = self.get(f"{words[0]} {words[1]}")
            if command is not None:
                return Invocation(command, words[2:])
        command = self.get(words[0])
        return None if command is None else Invocation(command, words[1:])

    async def run(self, invocation: Invocation, ctx: CommandContext) -> Reply:
        """Parse chat words and run; every failure comes back as a reply."""
        command = invocation.command
        try:
            args = parse_args(command.args, invocation.words, command.usage)
        except UsageError as err:
            return Reply(str(err))
        return await self._call(command, args, ctx)

    async def invoke(self, name: str, arguments: Mapping[str, Any], ctx: CommandContext) -> Reply:
        """Run by name with JSON arguments (API, MCP, LLM tools)."""
        command = self.get(name)
        if command is None:
            return Reply(f"Unknown command {name!r}. Try `help`.")
        try:
            args = command.args.model_validate(dict(arguments))
        except ValidationError as err:
            return Reply(usage_message(command.usage, err))
        return await self._call(command, args, ctx)

    async def _call(self, command: Command, args: Args, ctx: CommandContext) -> Reply:
        if command.permission is Permission.ADMIN and not ctx.admin:
            return Reply(f"Sorry, `{command.name}` is for admins only.")
        if command.destructive and ctx.via == "tool" and not ctx.admin:
            return Reply(f"`{command.name}` needs an admin to ask for it.")
        try:
            parts = {name: self._parts[name] for name in command.needs}
            return await command.handler(ctx, args, **parts)
        except asyncio.CancelledError:
            raise
        except (UsageError, AccessDenied, PipelineError) as err:
            return Reply(str(err))
        except MusherError as err:
            return Reply(f"⚠️ {err}")
        except Exception:
            log.exception("command %r failed in %s", command.name, ctx.session)
            return Reply(f"⚠️ `{command.name}` failed with an internal error; see the daemon log.")
