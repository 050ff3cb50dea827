"""Matrix events → musher values: which timeline events are messages to hand in, and how.

A room's ``m.room.message`` of type ``m.text`` from someone else becomes one
:class:`~bot.messages.InboundMessage` (its room is the room id, its event id the Matrix
event id, so redeliveries dedupe); edits (``m.replace``), notices (other bots), emotes,
media and state events are not messages to answer. A direct room, a mention pill or the
bot's name addresses the bot.
"""

from __future__ import annotations

from typing import Any

from nio import RoomMessageText

from bot.messages import InboundMessage
from transports.matrix.mentions import is_mentioned

TRANSPORT = "matrix"


def inbound_message(
    room_id: str, event: Any, me: str, display_name: str | None, direct: bool
) -> InboundMessage | None:
    """The message ``event`` carries in ``room_id``, or ``None`` when there is none to hand in.

    ``me`` is the bot's user id (its own events are skipped), ``display_name`` its name in
    the room, ``direct`` whether the room is a direct chat.
    """
    if not isinstance(event, RoomMessageText) or event.sender == me:
        return None
    content: dict[str, Any] = event.source.get("content", {})
    relates = content.get("m.relates_to")
    if isinstance(relates, dict) and relates.get("rel_type") == "m.replace":
        return None  # an edit
    return InboundMessage(
        transport=TRANSPORT,
        room=room_id,
        sender=event.sender,
        event_id=event.event_id,
        ts=event.server_timestamp / 1000,
        text=event.body,
        mentioned=direct or is_mentioned(content, me, display_name),
    )
