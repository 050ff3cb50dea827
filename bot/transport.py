"""The one small protocol every transport implements (X1), and how it talks to the daemon."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from bot.messages import InboundMessage, Reply, Session

if TYPE_CHECKING:
    from aiohttp import web

    from bot.commands.registry import Registry
    from bot.db import Db
    from bot.feed import RoomFeed
    from bot.journal import Journal
    from bot.kv import TransportState
    from bot.metrics import Metrics
    from config.models import Settings


@dataclass(frozen=True, slots=True)
class Capabilities:
    max_length: int = 4000
    edits: bool = False
    threads: bool = False
    ephemeral: bool = False
    typing: bool = False


class FeedResult(Enum):
    """What ingress did with a message; the transport acknowledges every one of them."""

    ACCEPTED = "accepted"
    DUPLICATE = "duplicate"
    IGNORED = "ignored"  # own message, or not addressed to the bot
    REFUSED = "refused"  # the sender is not allowed


class Sink(Protocol):
    """Where transports hand in messages: the daemon's ingress."""

    async def feed(self, msg: InboundMessage) -> FeedResult:
        """Decide and journal ``msg`` durably, then return: acknowledge the platform now.

        Acting on it (a command and its reply, a turn) happens afterwards on the session's
        own lane, so the ack never waits for a command or a send (I1). A command's reply
        reaches the transport through :meth:`Transport.send` with ``reply.reply_to`` set.
        """
        ...

    def typing(self, session: Session, sender: str, seconds: float) -> None:
        """``sender`` is typing in ``session`` for up to ``seconds`` more (0: stopped).

        For transports whose platform reports typing (D1): a batch of free text waits while
        one of its senders types. Each signal replaces the last one of that sender; a
        platform that never says "stopped" passes its own typing timeout. Never blocks.
        """
        ...


@runtime_checkable
class Mailbox(Protocol):
    """An ``InboundMessage.reply_to`` that wants to know when acting on its message is over.

    Ingress calls :meth:`settle` once the message's command ran and its reply was handed to
    :meth:`Transport.send` (or the free text reached the dispatcher, or the message was
    refused or dropped), so a transport waiting for a command's reply (Slack's ack) can
    stop waiting at once when none is coming. Optional: other handles are left alone.
    """

    def settle(self) -> None: ...


class Transport(Protocol):
    name: str
    capabilities: Capabilities
    identities: tuple[str, ...]  # the bot's own user ids / names here (I2, I4)

    async def start(self, sink: Sink) -> None:
        """Connect and begin feeding messages to ``sink``; returns once running."""
        ...

    async def send(self, session: Session, reply: Reply) -> str | None:
        """Deliver ``reply`` (already split to ``max_length``); returns the platform's id."""
        ...

    async def typing(self, session: Session, active: bool) -> None: ...

    async def aclose(self) -> None: ...


@runtime_checkable
class HttpMount(Protocol):
    """A transport that serves routes on the daemon's one HTTP server."""

    def mount(self, app: web.Application) -> None: ...


@runtime_checkable
class LiveHealth(Protocol):
    """A transport whose connection can drop while it runs (a gateway websocket)."""

    name: str

    def health(self) -> str:
        """``"ok"`` while connected, else what is wrong; ``/readyz`` shows it."""
        ...


@runtime_checkable
class SingleConnection(Protocol):
    """A transport whose intake is one long-lived connection per account (the Discord
    gateway, Slack Socket Mode, the Matrix sync loop).

    With several daemons on one database only the account's leader holds the connection
    (:mod:`bot.leaders`); every daemon can still send. :meth:`Transport.start` is
    :meth:`open` then :meth:`connect`.
    """

    name: str

    @property
    def account(self) -> str:
        """The account the connection is for, once :meth:`open` returned; ``""`` when this
        configuration has no single connection (Slack in http mode)."""
        ...

    async def open(self, sink: Sink) -> None:
        """Log in: ready to send and to take webhooks, without the connection."""
        ...

    async def connect(self) -> None:
        """Open the connection and feed what it brings to the sink; returns once running."""
        ...

    async def disconnect(self) -> None:
        """Stop taking messages from the connection at once, then close it; sending goes on."""
        ...


def live_health(transports: Iterable[object]) -> dict[str, str]:
    """``{"transport:<name>": state}`` for the transports that report their own state."""
    return {f"transport:{t.name}": t.health() for t in transports if isinstance(t, LiveHealth)}


@dataclass(frozen=True, slots=True)
class TransportContext:
    """What the composition root hands a transport module's ``create(ctx)`` factory."""

    settings: Settings
    db: Db
    journal: Journal
    feed: RoomFeed
    metrics: Metrics
    state: TransportState
    registry: Registry

    @property
    def data_dir(self) -> Path:
        return self.db.data_dir
