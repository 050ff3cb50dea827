"""Application commands, answered inside Discord's 3-second window or deferred.

The flow (the same for gateway interactions and the HTTP endpoint): turn the command into
its chat line, hand it to ingress with an :class:`InteractionReply` as ``reply_to``, and
wait — at most :data:`ANSWER_BUDGET_S` after it arrived — for the command's reply to land in
that mailbox (it arrives through ``transport.send``). A reply in time is the interaction's
response (type 4); otherwise the response is "thinking…" (type 5, deferred) and the replies
follow through the interaction's webhook as they come. Read-only commands are answered
ephemerally; commands that change something, publicly.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass, field
from typing import Any, TypeVar

from bot.commands.registry import Registry
from bot.messages import InboundMessage
from bot.transport import FeedResult
from config.errors import TransientError
from transports.discord.commands import READ_ONLY, line_of
from transports.discord.send import EPHEMERAL, NO_MENTIONS
from transports.discord.wire import InteractionIn, command_message

log = logging.getLogger("musher.discord")

ANSWER_BUDGET_S = 2.5  # Discord wants the first response within 3 s
FIRST_RESPONSE_S = 30.0  # a follow-up waits at most this long for the first response
MESSAGE, DEFERRED = 4, 5
NOT_ALLOWED = "Sorry, you are not on musher's list of users here. Ask an admin to add you."
NOT_HERE = "musher is not set up for this channel."
UNKNOWN = "This command is not one musher knows (any more); try `/musher help`."
ALREADY = "This command was already received."

FollowUp = Callable[[str, bool], Awaitable[None]]
HandIn = Callable[[InboundMessage], "asyncio.Task[FeedResult]"]
T = TypeVar("T")


@dataclass(slots=True)
class InteractionReply:
    """The reply handle of one interaction: the first response's slot, then follow-ups.

    While the first response has not been decided, :meth:`offer` keeps texts for it; after
    that, :meth:`deliver` waits until the first response went out (follow-ups before it
    would be refused by Discord) and posts each text as a follow-up.
    """

    ephemeral: bool
    follow_up: FollowUp
    texts: list[str] = field(default_factory=list)
    open: bool = True
    arrived: asyncio.Event = field(default_factory=asyncio.Event)
    answered: asyncio.Event = field(default_factory=asyncio.Event)

    def offer(self, text: str) -> bool:
        if self.open:
            self.texts.append(text)
            self.arrived.set()
        return self.open

    def settle(self) -> None:
        """Ingress is done acting on the interaction (a :class:`bot.transport.Mailbox`): its
        reply, if any, has been offered, so the first response need not wait longer."""
        self.arrived.set()

    def close(self) -> list[str]:
        self.open = False
        texts, self.texts = self.texts, []
        return texts

    async def deliver(self, text: str) -> None:
        """Send ``text`` in the first response if it is still open, else as a follow-up."""
        if self.offer(text):
            return
        try:
            await asyncio.wait_for(self.answered.wait(), FIRST_RESPONSE_S)
        except TimeoutError:
            raise TransientError("discord: the interaction was never answered") from None
        await self.follow_up(text, self.ephemeral)


def message_payload(text: str, ephemeral: bool) -> dict[str, Any]:
    data: dict[str, Any] = {"content": text, "allowed_mentions": NO_MENTIONS}
    if ephemeral:
        data["flags"] = EPHEMERAL
    return {"type": MESSAGE, "data": data}


class Interactions:
    """Decides each interaction's first response; see the module docstring."""

    def __init__(
        self,
        registry: Registry,
        hand_in: HandIn,
        channels: Collection[str],
        budget: float = ANSWER_BUDGET_S,
    ) -> None:
        self.registry = registry
        self.hand_in = hand_in
        self.channels = frozenset(channels)
        self.budget = budget

    async def answer(
        self, it: InteractionIn, follow_up: FollowUp
    ) -> tuple[dict[str, Any], InteractionReply | None]:
        """The first response for ``it`` and the reply handle whose texts are still to come.

        The caller sends the response, then calls :func:`flush` on the handle.
        """
        here = {it.channel_id, it.parent_id}
        if self.channels and not it.direct and not here & self.channels:
            return message_payload(NOT_HERE, True), None
        line = line_of(self.registry, it.name, it.options)
        if line is None:
            return message_payload(UNKNOWN, True), None
        invocation = self.registry.match(line)
        read_only = invocation is not None and invocation.command.name in READ_ONLY
        handle = InteractionReply(read_only, follow_up)
        msg = command_message(it, line, handle, read_only)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.budget
        result = await _bounded(self.hand_in(msg), self.budget)
        expect = result is None or (result is FeedResult.ACCEPTED and invocation is not None)
        if expect and not handle.texts:
            with contextlib.suppress(TimeoutError):  # no text yet: the first response defers
                async with asyncio.timeout_at(deadline):
                    await handle.arrived.wait()
        texts = handle.close()
        return self._first(line, result, expect, texts, handle), handle

    def _first(
        self,
        line: str,
        result: FeedResult | None,
        expect: bool,
        texts: list[str],
        handle: InteractionReply,
    ) -> dict[str, Any]:
        if texts:
            for text in texts[1:]:
                handle.texts.append(text)  # sent as follow-ups once answered
            return message_payload(texts[0], handle.ephemeral)
        if expect:
            deferred: dict[str, Any] = {"type": DEFERRED}
            if handle.ephemeral:
                deferred["data"] = {"flags": EPHEMERAL}
            return deferred
        if result is FeedResult.REFUSED:
            return message_payload(NOT_ALLOWED, True)
        if result is FeedResult.DUPLICATE:
            return message_payload(ALREADY, True)
        return message_payload(f"> {line}"[:2000], False)  # free text: the answer follows


async def flush(handle: InteractionReply) -> None:
    """After the first response: post the texts it could not hold, then let later replies
    follow (in order)."""
    try:
        for text in handle.close():
            await handle.follow_up(text, handle.ephemeral)
    finally:
        handle.answered.set()


async def _bounded(task: asyncio.Task[T], seconds: float) -> T | None:
    """``task``'s result, or ``None`` if it takes longer than ``seconds`` (it keeps running)."""
    done, _ = await asyncio.wait({task}, timeout=seconds)
    return task.result() if task in done else None
