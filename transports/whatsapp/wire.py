"""WhatsApp payloads → musher values: Meta webhook JSON and Twilio form posts.

A session is one phone number: room and sender are the E.164 number (``+16505551234``),
so ``allowed_users`` and ``admins`` list numbers. A message's ``event_id`` is the platform's
id (``wamid.…``, ``SM…``), so a redelivery is journalled once. A payload is parsed whole
before anything is handed in: a malformed one raises :class:`Malformed` (answered 400) and
nothing of it reaches the journal.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from bot.messages import InboundMessage

TRANSPORT = "whatsapp"
_NUMBER = re.compile(r"^\+?([1-9][0-9]{1,14})$")
_MAX_ID = 512


class Malformed(ValueError):
    """The body is not a payload of the kind this route takes."""


@dataclass(frozen=True, slots=True)
class Inbound:
    """What one webhook delivery holds: text messages, and senders of anything else."""

    messages: tuple[InboundMessage, ...] = ()
    other: tuple[str, ...] = ()  # numbers that sent an image, audio, a location…
    statuses: tuple[Mapping[str, Any], ...] = ()


def e164(raw: object) -> str:
    """``16505551234``, ``+16505551234`` or ``whatsapp:+16505551234`` → ``+16505551234``."""
    if not isinstance(raw, str):
        raise Malformed("a phone number is missing")
    match = _NUMBER.match(raw.removeprefix("whatsapp:").strip())
    if match is None:
        raise Malformed(f"{raw[:40]!r} is not a phone number")
    return "+" + match[1]


def meta_inbound(body: object) -> Inbound:
    """Every message and status of a Cloud API ``whatsapp_business_account`` delivery."""
    if not isinstance(body, Mapping) or body.get("object") != "whatsapp_business_account":
        raise Malformed("not a WhatsApp Business Account webhook")
    messages: list[InboundMessage] = []
    other: list[str] = []
    statuses: list[Mapping[str, Any]] = []
    for entry in _list(body, "entry"):
        for change in _list(entry, "changes"):
            value = change.get("value")
            if not isinstance(value, Mapping):
                raise Malformed("a change without a value")
            for message in _list(value, "messages"):
                text = _meta_text(message)
                if text is None:
                    other.append(e164(message.get("from")))
                else:
                    messages.append(text)
            statuses += _list(value, "statuses")
    return Inbound(tuple(messages), tuple(other), tuple(statuses))


def _meta_text(message: Mapping[str, Any]) -> InboundMessage | None:
    sender = e164(message.get("from"))
    if message.get("type") != "text":
        return None  # image, audio, location, reaction, unsupported…: only the sender counts
    mid = message.get("id")
    if not isinstance(mid, str) or not mid or len(mid) > _MAX_ID:
        raise Malformed("a text message without an id")
    text = message.get("text")
    body = text.get("body") if isinstance(text, Mapping) else None
    if not isinstance(body, str):
        raise Malformed("a text message without a body")
    return InboundMessage(
        TRANSPORT, sender, sender, mid, _seconds(message.get("timestamp")), body, mentioned=True
    )


def twilio_inbound(form: Mapping[str, str]) -> Inbound:
    """The message of one Twilio form POST (media without text counts as "other")."""
    sid = form.get("MessageSid") or form.get("SmsMessageSid")
    if not sid or len(sid) > _MAX_ID:
        raise Malformed("MessageSid is missing")
    sender = e164(form.get("From"))
    body = form.get("Body", "")
    if not body.strip():
        media = form.get("NumMedia", "0")
        if (media.isdigit() and int(media) > 0) or form.get("Latitude"):
            return Inbound(other=(sender,))
        raise Malformed("Body is missing")
    msg = InboundMessage(TRANSPORT, sender, sender, sid, time.time(), body, mentioned=True)
    return Inbound(messages=(msg,))


def _list(container: Mapping[str, Any], key: str) -> list[Mapping[str, Any]]:
    items = container.get(key, [])
    if not isinstance(items, list) or not all(isinstance(i, Mapping) for i in items):
        raise Malformed(f"{key} is not a list of objects")
    return items


def _seconds(raw: object) -> float:
    try:
        return float(raw) if isinstance(raw, str | int) else time.time()
    except ValueError:
        return time.time()
