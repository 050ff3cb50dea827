"""Discord payloads ↔ musher values: gateway messages and interactions in.

Rooms: a channel (or DM channel) is its id; a thread is a channel of its own in Discord, so
a thread is its own room (``discord:<thread id>``) with no extra work. Every message's
``event_id`` is its snowflake; an interaction's is ``i:<interaction id>``, so a replayed
interaction is journalled once.
"""

from __future__ import annotations

import re
import time
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

import discord

from bot.messages import InboundMessage

TRANSPORT = "discord"
_SPOKEN = (discord.MessageType.default, discord.MessageType.reply)


@dataclass(frozen=True, slots=True)
class Me:
    """Who the bot is: its user id, names, and the managed role Discord gave it per guild."""

    user_id: int
    names: tuple[str, ...] = ()
    role_ids: frozenset[int] = frozenset()


@dataclass(frozen=True, slots=True)
class InteractionIn:
    """The parts of an application-command interaction musher uses (gateway or HTTP)."""

    id: str
    token: str
    application_id: str
    channel_id: str
    user_id: str
    name: str
    options: tuple[Mapping[str, Any], ...]
    direct: bool
    parent_id: str = ""  # a thread's channel


def message_in(
    message: discord.Message, me: Me, channels: Collection[str]
) -> InboundMessage | None:
    """The message to hand in, or ``None``: bots (ourselves included), system messages,
    channels outside ``channels`` (when non-empty; a thread counts as its parent, DMs always
    pass), messages with no text. A DM, a mention of the bot or of its managed role is
    addressed; the mention is removed from the text."""
    if message.author.bot or message.type not in _SPOKEN:
        return None
    channel = message.channel
    direct = isinstance(channel, discord.DMChannel)
    if channels and not direct:
        parent = getattr(channel, "parent_id", None)
        if str(channel.id) not in channels and str(parent) not in channels:
            return None
    roles = me.role_ids & set(message.raw_role_mentions)
    mentioned = direct or me.user_id in message.raw_mentions or bool(roles)
    text = strip_mentions(message.content, me.user_id, roles)
    if not text:
        return None  # an attachment or a sticker alone, or a bare mention: nothing to read
    return InboundMessage(
        TRANSPORT,
        str(channel.id),
        str(message.author.id),
        str(message.id),
        message.created_at.timestamp(),
        text,
        mentioned=mentioned,
    )


def strip_mentions(text: str, user_id: int, role_ids: Collection[int] = ()) -> str:
    """Remove the mentions of the bot (``<@id>``, ``<@!id>``, ``<@&role>``) at the start."""
    tokens = [rf"<@!?{user_id}>", *(rf"<@&{r}>" for r in role_ids)]
    pattern = re.compile(rf"^\s*(?:(?:{'|'.join(tokens)})[\s:,]*)+")
    return pattern.sub("", text).strip()


def interaction_in(payload: Mapping[str, Any]) -> InteractionIn | None:
    """An application command from an interaction's JSON, or ``None`` if it is not one."""
    data = payload.get("data")
    user = payload.get("member", {}).get("user") if "member" in payload else payload.get("user")
    if payload.get("type") != 2 or not isinstance(data, Mapping) or not isinstance(user, Mapping):
        return None
    fields = (
        payload.get("id"),
        payload.get("token"),
        payload.get("application_id"),
        payload.get("channel_id") or (payload.get("channel") or {}).get("id"),
        user.get("id"),
        data.get("name"),
    )
    if not all(isinstance(f, str) and f and len(f) <= 4096 for f in fields):
        return None
    options = data.get("options") or []
    if not isinstance(options, list):
        return None
    iid, token, app_id, channel_id, user_id, name = (str(f) for f in fields)
    direct = "guild_id" not in payload or payload.get("guild_id") is None
    opts = tuple(o for o in options if isinstance(o, Mapping))
    channel = payload.get("channel")
    parent = channel.get("parent_id") if isinstance(channel, Mapping) else None
    parent_id = parent if isinstance(parent, str) else ""
    return InteractionIn(iid, token, app_id, channel_id, user_id, name, opts, direct, parent_id)


def from_gateway(interaction: discord.Interaction[Any]) -> InteractionIn | None:
    """The same, from discord.py's parsed gateway interaction."""
    if interaction.type is not discord.InteractionType.application_command:
        return None
    data: Mapping[str, Any] = interaction.data or {}
    options = data.get("options") or []
    return InteractionIn(
        str(interaction.id),
        interaction.token,
        str(interaction.application_id),
        str(interaction.channel_id),
        str(interaction.user.id),
        str(data.get("name", "")),
        tuple(o for o in options if isinstance(o, Mapping)),
        interaction.guild_id is None,
        str(getattr(interaction.channel, "parent_id", None) or ""),
    )


def command_message(
    it: InteractionIn, line: str, reply_to: object, ephemeral: bool
) -> InboundMessage:
    """The addressed message an application command stands for."""
    return InboundMessage(
        TRANSPORT,
        it.channel_id,
        it.user_id,
        f"i:{it.id}",
        time.time(),
        line,
        mentioned=True,
        reply_to=reply_to,
        ephemeral_ok=ephemeral,
    )
