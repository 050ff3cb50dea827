"""The values that flow through the daemon: what transports hand in and what goes back out.

Transports translate their wire payloads into these frozen dataclasses and back; nothing in
``bot/`` sees a transport SDK's types.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

THREAD_SEP = "/"
"""Between a room and a thread of it in a session key: ``slack:C123/<thread_ts>``."""


class Session(str):
    """One room on one transport, as a value: :attr:`transport`, :attr:`room`, :attr:`thread`.

    Its text is the session key ``transport:room`` or ``transport:room/thread`` (what the
    journal, the op log and the rooms table store), so it compares, hashes and stores as that
    key; code reads its parts from the attributes and never splits the key itself. A plain
    key string is accepted wherever a session goes, as :meth:`of` makes it one.
    """

    __slots__ = ()

    @classmethod
    def of(cls, key: str) -> Session:
        """``key`` as a session (itself when it already is one)."""
        return key if isinstance(key, Session) else cls(key)

    @classmethod
    def make(cls, transport: str, room: str, thread: str | None = None) -> Session:
        """The session of ``room`` (or of ``thread`` in it) on ``transport``."""
        return cls(f"{transport}:{room}{THREAD_SEP}{thread}" if thread else f"{transport}:{room}")

    @property
    def transport(self) -> str:
        return self.partition(":")[0]

    @property
    def address(self) -> str:
        """The room as its transport names it, thread included: ``C123/17.5``."""
        return self.partition(":")[2]

    @property
    def room(self) -> str:
        """The room or channel, without the thread: ``C123``."""
        return self.address.partition(THREAD_SEP)[0]

    @property
    def thread(self) -> str | None:
        """The thread inside :attr:`room`, or None for the room itself."""
        return self.address.partition(THREAD_SEP)[2] or None


@dataclass(frozen=True, slots=True)
class InboundMessage:
    """One message as a transport received it.

    ``room`` is the transport's own room/channel id (``C123/<thread_ts>`` for a thread); the
    session is ``transport:room``. ``mentioned`` is true when the bot was addressed (a
    mention, a direct message, the web console). ``reply_to`` is an opaque handle only the
    originating transport understands (a :class:`~bot.transport.Mailbox` is told when acting
    on the message is over).
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
    def session(self) -> Session:
        return session_key(self.transport, self.room)


def session_key(transport: str, room: str) -> Session:
    """The session of one room on one transport, e.g. ``web:lobby``."""
    return Session(f"{transport}:{room}")


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
    folded_from: tuple[str, ...] = field(default=())

    @property
    def journal_ids(self) -> tuple[int, ...]:
        """Every journal row this entry stands for (a folded summary stands for many)."""
        return (self.journal_id, *self.extra_ids)

    def is_from(self, sender: str) -> bool:
        """Whether ``sender`` wrote this entry or one of the messages folded into it."""
        return sender == self.sender or sender in self.folded_from
