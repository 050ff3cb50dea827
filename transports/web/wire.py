"""Web API payloads ↔ values: validation of what the page (or ``musher say``) posts."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

ROOM_RE = re.compile(r"[A-Za-z0-9._:-]{1,128}")
MAX_SENDER = 128
MAX_ID = 128


class WireError(ValueError):
    """The payload is not acceptable; ``str(err)`` is the 400 message."""


@dataclass(frozen=True, slots=True)
class PostedMessage:
    sender: str
    text: str
    id: str | None


def check_room(room: str) -> str:
    if not ROOM_RE.fullmatch(room):
        raise WireError("room names are 1-128 characters of A-Z a-z 0-9 . _ : -")
    return room


def parse_post(body: dict[str, Any]) -> PostedMessage:
    """Read ``{"sender", "text", "id"?}``; unknown fields are ignored."""
    sender = body.get("sender")
    text = body.get("text")
    client_id = body.get("id")
    if not isinstance(sender, str) or not sender.strip():
        raise WireError("'sender' is required: a non-empty string")
    if len(sender) > MAX_SENDER:
        raise WireError(f"'sender' is longer than {MAX_SENDER} characters")
    if not isinstance(text, str) or not text.strip():
        raise WireError("'text' is required: a non-empty string")
    if client_id is not None and (
        not isinstance(client_id, str) or not 0 < len(client_id) <= MAX_ID
    ):
        raise WireError(f"'id' must be a string of 1-{MAX_ID} characters")
    return PostedMessage(sender.strip(), text, client_id)


def parse_after(value: str | None) -> int:
    if value is None or value == "":
        return 0
    try:
        after = int(value)
    except ValueError:
        raise WireError("'after' must be a whole number") from None
    if after < 0:
        raise WireError("'after' must not be negative")
    return after
