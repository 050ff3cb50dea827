"""Slack payloads ↔ musher values: events and slash commands in, rooms and reply handles out.

Rooms: a channel (or DM) is ``C123``; a thread in it is its own room ``C123/<thread_ts>``.
Every delivery of one user message (as ``message``, as ``app_mention``, and each retry of
either) gets the same ``event_id`` — ``<channel>:<ts>`` — so the ingress journal answers it
once. Slash commands use their ``trigger_id``, which Socket Mode redeliveries keep.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeGuard

from bot.messages import InboundMessage
from pipeline.text_rules import first_unsafe, scrub

TRANSPORT = "slack"
# Message subtypes that are a person saying something; every other subtype (edits,
# deletions, joins, topic changes, bot messages) is not a message to answer.
_SPOKEN_SUBTYPES = frozenset({None, "thread_broadcast", "file_share"})


@dataclass(frozen=True, slots=True)
class Bot:
    """Who the bot is in this workspace (from ``auth.test``)."""

    user_id: str
    bot_id: str = ""


@dataclass(slots=True)
class CommandReply:
    """The reply mailbox of one slash command: its ``response_url`` and the ack's one slot.

    While the command's listener has not acknowledged yet, :meth:`offer` keeps reply texts
    for the ack body (the first) and for the ``response_url`` right after it (the rest);
    once the ack went out, :meth:`offer` refuses and replies go to the ``response_url``.
    Ingress calls :meth:`settle` (a :class:`bot.transport.Mailbox`) once acting on the
    command is over, so the listener knows no more texts are coming for the ack.
    """

    response_url: str
    open: bool = True
    texts: list[str] = field(default_factory=list)
    settled: asyncio.Event = field(default_factory=asyncio.Event)

    def settle(self) -> None:
        """Acting on the command is over: whatever it replied has been offered."""
        self.settled.set()

    def offer(self, text: str) -> bool:
        """Keep ``text`` for the ack if it has not been sent; ``False`` once it has."""
        if self.open:
            self.texts.append(text)
        return self.open

    def close(self) -> list[str]:
        """Seal the slot (the ack is being sent); returns the texts it collected."""
        self.open = False
        texts, self.texts = self.texts, []
        return texts


def room_of(channel: str, ts: str, thread_ts: str | None) -> str:
    """The room a message belongs to: its thread when it is inside one."""
    return f"{channel}/{thread_ts}" if thread_ts and thread_ts != ts else channel


def split_room(room: str) -> tuple[str, str | None]:
    """Inverse of :func:`room_of`: ``"C1/17.5"`` → ``("C1", "17.5")``."""
    channel, _, thread_ts = room.partition("/")
    return channel, thread_ts or None


def event_message(
    body: Mapping[str, Any], bot: Bot, channels: Collection[str]
) -> InboundMessage | None:
    """The message an Events API payload carries, or ``None`` when there is none to hand in.

    ``None`` for: other event types, edits/joins/other subtypes, bot messages (ours and other
    bots'), channels outside ``channels`` (when it is non-empty; DMs always pass) and
    payloads missing a field. A DM, an ``app_mention`` or a message naming ``<@bot>``
    anywhere is addressed (``mentioned=True``), so whichever delivery of a mention arrives
    first is journalled as addressed.
    """
    event = body.get("event")
    if not isinstance(event, Mapping) or event.get("type") not in ("message", "app_mention"):
        return None
    if event.get("subtype") not in _SPOKEN_SUBTYPES or event.get("bot_id"):
        return None
    channel, ts, user = event.get("channel"), event.get("ts"), event.get("user")
    text, thread_ts = event.get("text", ""), event.get("thread_ts")
    if not (_word(channel) and _word(ts) and _word(user) and isinstance(text, str)):
        return None
    if user == bot.user_id or not isinstance(thread_ts, str | None):
        return None
    direct = event.get("channel_type") == "im"
    if channels and not direct and channel not in channels:
        return None
    mentioned = direct or event["type"] == "app_mention" or f"<@{bot.user_id}>" in text
    return InboundMessage(
        TRANSPORT,
        room_of(channel, ts, thread_ts),
        user,
        f"{channel}:{ts}",
        _seconds(ts),
        scrub(text),
        mentioned=mentioned,
    )


def command_message(
    payload: Mapping[str, Any], aliases: Mapping[str, str], channels: Collection[str]
) -> tuple[InboundMessage, CommandReply] | str:
    """The message a slash command stands for, with its reply handle; or why it is refused.

    ``/musher status 12`` and ``/musher-status 12`` (``aliases`` maps the alias to the
    command's words) both become ``status 12``. The message is addressed and may be answered
    ephemerally. Channels outside ``channels`` (when non-empty) are refused, DMs excepted.
    """
    command, text = payload.get("command"), payload.get("text", "")
    channel, user = payload.get("channel_id"), payload.get("user_id")
    trigger, response_url = payload.get("trigger_id"), payload.get("response_url")
    if not (_word(command) and _word(channel) and _word(user) and isinstance(text, str)):
        return "This command arrived incomplete; please try again."
    if not (_word(trigger) and _word(response_url)):
        return "This command arrived incomplete; please try again."
    direct = payload.get("channel_name") == "directmessage" or channel.startswith("D")
    if channels and not direct and channel not in channels:
        return "musher is not set up for this channel."
    words = aliases.get(command.lower(), "")
    text = scrub(text)
    line = f"{words} {text}".strip() if words else text.strip()
    if not line:
        line = "help"
    reply = CommandReply(response_url)
    msg = InboundMessage(
        TRANSPORT,
        channel,
        user,
        f"cmd:{trigger}",
        time.time(),
        line,
        mentioned=True,
        reply_to=reply,
        ephemeral_ok=True,
    )
    return msg, reply


def _word(value: object) -> TypeGuard[str]:
    """A non-empty id of at most 4096 characters, without control/bidi/surrogate ones."""
    return (
        isinstance(value, str)
        and bool(value)
        and len(value) <= 4096
        and first_unsafe(value, multiline=False) is None
    )


def _seconds(ts: str) -> float:
    try:
        return float(ts)
    except ValueError:
        return time.time()
