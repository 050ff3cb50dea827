"""Bolt listeners: Events API payloads and slash commands → ingress, acknowledged in time.

Both run with ``process_before_response=True``: Bolt answers Slack (the HTTP response, or
the Socket Mode ack) only when the listener returns. A listener hands its message to
ingress as a task and waits for it at most :data:`ACK_BUDGET_S` — journalling takes
milliseconds, so the ack follows the journal write (I1). A slash command's listener then
waits, within the same budget, for the command's reply in its mailbox
(:class:`~transports.slack.wire.CommandReply`, settled by ingress once the command ran on
the room's lane); a slower command answers through the ``response_url``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import Callable, Collection, Mapping
from typing import Any

from slack_bolt.async_app import AsyncApp
from slack_bolt.context.ack.async_ack import AsyncAck

from bot.messages import InboundMessage
from bot.transport import FeedResult
from transports.slack.wire import Bot, command_message, event_message

log = logging.getLogger("musher.slack")

ACK_BUDGET_S = 2.5  # Slack wants an answer within 3 s
WORKING = "Working on it…"
NOT_ALLOWED = "Sorry, you are not on musher's list of users here. Ask an admin to add you."

HandIn = Callable[[InboundMessage], "asyncio.Task[FeedResult]"]


class Listeners:
    """The listeners of one transport; :meth:`register` adds them to a Bolt app.

    ``hand_in`` starts ingress on a message as a (tracked) task; a listener waits for it at
    most ``budget`` seconds. ``bot`` is read at call time: the transport learns it in
    ``start``.
    """

    def __init__(
        self,
        hand_in: HandIn,
        bot: Callable[[], Bot],
        channels: Collection[str],
        aliases: Mapping[str, str],
        follow_up: Callable[[str, list[str]], None],
        budget: float = ACK_BUDGET_S,
    ) -> None:
        self.hand_in = hand_in
        self.budget = budget
        self.bot = bot
        self.channels = frozenset(channels)
        self.aliases = {k.lower(): v for k, v in aliases.items()}
        self.follow_up = follow_up  # posts texts beyond the first to a response_url

    async def feed(self, msg: InboundMessage) -> FeedResult | None:
        """Ingress's result, or ``None`` if it is still running when the budget is spent."""
        return await bounded(self.hand_in(msg), self.budget)

    def register(self, app: AsyncApp, command: str) -> None:
        names = [command, *self.aliases]
        pattern = re.compile("^(?:" + "|".join(re.escape(n) for n in names) + ")$", re.I)

        # Bolt injects arguments by parameter name and counts ``self``: plain functions.
        async def command_listener(body: dict[str, Any], ack: AsyncAck) -> None:
            await self.on_command(body, ack)

        async def event_listener(body: dict[str, Any]) -> None:
            await self.on_event(body)

        app.command(pattern)(command_listener)
        app.event(re.compile(".*"))(event_listener)  # every event is acked, even unused ones

    async def on_event(self, body: dict[str, Any]) -> None:
        """Hand in the message an event carries (if any). Bolt acks after this returns."""
        msg = event_message(body, self.bot(), self.channels)
        if msg is None:
            return
        if await self.feed(msg) is None:
            log.warning("ingress is slow; acked %s before it was journalled", msg.event_id)

    async def on_command(self, body: dict[str, Any], ack: AsyncAck) -> None:
        """Run a slash command and put its (first) reply in the ack, ephemerally.

        Free text through the command starts a turn in the channel; the ack is then an empty
        ``in_channel`` response, so the question stays visible next to the answer.
        """
        parsed = command_message(body, self.aliases, self.channels)
        if isinstance(parsed, str):
            await ack(text=parsed, response_type="ephemeral")
            return
        msg, reply = parsed
        deadline = asyncio.get_running_loop().time() + self.budget
        result = await self.feed(msg)
        if result is not None:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout_at(deadline):
                    await reply.settled.wait()
        texts = reply.close()
        if texts:
            await ack(text=texts[0], response_type="ephemeral")
            if texts[1:]:
                self.follow_up(reply.response_url, texts[1:])
        elif result is None or not reply.settled.is_set():
            await ack(text=WORKING, response_type="ephemeral")
        elif result is FeedResult.REFUSED:
            await ack(text=NOT_ALLOWED, response_type="ephemeral")
        elif result is FeedResult.ACCEPTED:
            await ack({"response_type": "in_channel"})
        else:
            await ack()


async def bounded(task: asyncio.Task[FeedResult], budget: float) -> FeedResult | None:
    """``task``'s result if it finishes within ``budget`` seconds, else ``None``.

    The task is never cancelled here. Its failure is raised (Bolt then answers with an
    error status, so Slack delivers the event again).
    """
    done, _ = await asyncio.wait({task}, timeout=budget)
    return task.result() if done else None
