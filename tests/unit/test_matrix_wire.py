"""Matrix timeline events → InboundMessage (transports/matrix/wire.py)."""

from __future__ import annotations

from typing import Any

from nio import Event, RoomMessageText

from transports.matrix.wire import inbound_message

ROOM, BOT = "!r:example.org", "@musher:example.org"


def text_event(body: str, sender: str = "@alice:example.org", **content: Any) -> Event:
    source = {
        "type": "m.room.message",
        "event_id": "$e1",
        "sender": sender,
        "origin_server_ts": 1_700_000_000_000,
        "content": {"msgtype": "m.text", "body": body, **content},
    }
    event = RoomMessageText.from_dict(source)
    assert isinstance(event, RoomMessageText)
    return event


def test_a_text_message_becomes_one_inbound_message() -> None:
    msg = inbound_message(ROOM, text_event("hello"), BOT, "musher", direct=False)
    assert msg is not None
    assert (msg.transport, msg.room, msg.sender, msg.event_id) == (
        "matrix",
        ROOM,
        "@alice:example.org",
        "$e1",
    )
    assert (msg.text, msg.ts, msg.mentioned) == ("hello", 1_700_000_000.0, False)
    assert msg.session == f"matrix:{ROOM}" and msg.session.room == ROOM


def test_direct_rooms_and_mentions_address_the_bot() -> None:
    direct = inbound_message(ROOM, text_event("hi"), BOT, "musher", direct=True)
    pill = text_event("musher: status", **{"m.mentions": {"user_ids": [BOT]}})
    assert direct is not None and direct.mentioned
    mentioned = inbound_message(ROOM, pill, BOT, "musher", direct=False)
    assert mentioned is not None and mentioned.mentioned


def test_own_messages_and_edits_are_not_handed_in() -> None:
    assert inbound_message(ROOM, text_event("mine", sender=BOT), BOT, "musher", False) is None
    edit = text_event("* fixed", **{"m.relates_to": {"rel_type": "m.replace", "event_id": "$0"}})
    assert inbound_message(ROOM, edit, BOT, "musher", False) is None
