"""The values that flow through the daemon: what transports hand in and what goes back out.

Transports translate their wire payloads into these frozen dataclasses and back; nothing in
``bot/`` sees a transport SDK's types.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class InboundMessage:
    """One message as a transport received it.

    ``room`` is the transport's own room/channel id; the session key is ``transport:room``.
    ``mentioned`` is true when the bot was addressed (a mention, a direct message, the web
    console). ``reply_to`` is an opaque handle only the originating transport understands.
    """

    transport: str
    room: str
    sender: str
    event_id: str
    ts: float
    text: str
    mentioned: bool = False
    reply_to: Any = None
    ephemeral_ok: bool = False

    @property
    def session(self) -> str:
        return session_key(self.transport, self.room)


def session_key(transport: str, room: str) -> str:
    """The session of one room on one transport, e.g. ``web:lobby``."""
    return f"{transport}:{room}"


def split_session(session: str) -> tuple[str, str]:
    """Inverse of :func:`session_key`: ``"matrix:!a:b"`` → ``("matrix", "!a:b")``."""
    transport, _, room = session.partition(":")
    return transport, room


@dataclass(frozen=True, slots=True)
class Reply:
    """Text for a room. ``ephemeral`` asks for a reply only the sender sees, where supported.

    ``key`` identifies this text for idempotent delivery: a transport that retries a send
    uses it (Matrix transaction ids, Slack message metadata) so a retry never posts twice.
    The outbox gives every chunk its own key, derived from the turn or command when known.
    ``reply_to`` is the inbound message's opaque handle (e.g. a Slack ``response_url``);
    only command replies carry it.
    """

    text: str
    ephemeral: bool = False
    notice: bool = False
    key: str = ""
    reply_to: Any = None


@dataclass(frozen=True, slots=True)
class QueuedText:
    """One free-text message waiting in the dispatcher: who said what, and its journal key."""

    sender: str
    text: str
    journal_id: int
    ts: float = 0.0
    extra_ids: tuple[int, ...] = field(default=())

    @property
    def journal_ids(self) -> tuple[int, ...]:
        """Every journal row this entry stands for (a folded summary stands for many)."""
        return (self.journal_id, *self.extra_ids)
