"""Web API payloads ↔ values: validation of what the page (or ``musher say``) posts."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bot.http import WEB_ROOM, WEB_ROOM_RULE
from pipeline.text_rules import first_unsafe

MAX_SENDER = 128
MAX_ID = 128
MAX_SEQ = 2**63 - 1


class WireError(ValueError):
    """The payload is not acceptable; ``str(err)`` is the 400 message."""


@dataclass(frozen=True, slots=True)
class PostedMessage:
    sender: str
    text: str
    id: str | None


def check_room(room: str) -> str:
    if not WEB_ROOM.fullmatch(room):
        raise WireError(WEB_ROOM_RULE)
    return room


def parse_post(body: dict[str, Any], *, sender_required: bool = True) -> PostedMessage:
    """Read ``{"sender", "text", "id"?}``; unknown fields are ignored.

    ``sender`` may be left out when the request's token names the sender (web users).
    Text holding control, bidi-override or surrogate characters is refused, never stored.
    """
    sender = body.get("sender")
    text = body.get("text")
    client_id = body.get("id")
    if sender is None and not sender_required:
        sender = ""
    elif not isinstance(sender, str) or not sender.strip():
        raise WireError("'sender' is required: a non-empty string")
    if len(sender) > MAX_SENDER:
        raise WireError(f"'sender' is longer than {MAX_SENDER} characters")
    if not isinstance(text, str) or not text.strip():
        raise WireError("'text' is required: a non-empty string")
    if client_id is not None and (
        not isinstance(client_id, str) or not 0 < len(client_id) <= MAX_ID
    ):
        raise WireError(f"'id' must be a string of 1-{MAX_ID} characters")
    for field, value, multiline in (
        ("sender", sender, False),
        ("text", text, True),
        ("id", client_id or "", False),
    ):
        if bad := first_unsafe(value, multiline=multiline):
            raise WireError(f"'{field}' must not contain the control or bidi character {bad}")
    return PostedMessage(sender.strip(), text, client_id)


@dataclass(frozen=True, slots=True)
class PostedTyping:
    sender: str
    typing: bool


def parse_typing(body: dict[str, Any], *, sender_required: bool = True) -> PostedTyping:
    """Read ``{"sender", "typing": bool}``; unknown fields are ignored."""
    sender = body.get("sender")
    typing = body.get("typing")
    if sender is None and not sender_required:
        sender = ""
    elif not isinstance(sender, str) or not sender.strip():
        raise WireError("'sender' is required: a non-empty string")
    if len(sender) > MAX_SENDER:
        raise WireError(f"'sender' is longer than {MAX_SENDER} characters")
    if bad := first_unsafe(sender, multiline=False):
        raise WireError(f"'sender' must not contain the control or bidi character {bad}")
    if not isinstance(typing, bool):
        raise WireError("'typing' is required: true or false")
    return PostedTyping(sender.strip(), typing)


def parse_after(value: str | None) -> int:
    """A log position: a decimal number from 0 to 2^63-1 (SQLite's largest integer)."""
    if value is None or value == "":
        return 0
    value = value.strip()
    if not value.isascii() or not value.isdigit() or len(value) > len(str(MAX_SEQ)):
        raise WireError("'after' must be a whole number from 0 to 2^63-1")
    after = int(value)
    if after > MAX_SEQ:
        raise WireError("'after' must be a whole number from 0 to 2^63-1")
    return after
