"""A whole :class:`bot.transport.Transport` in memory: what a test feeds in, what the bot sent.

``start(sink)`` keeps the sink; :meth:`MemoryTransport.say` hands a message to it as a real
transport would (and returns what intake decided); ``send`` records each reply with its
session (:meth:`MemoryTransport.wait_sent` waits for them); ``typing`` records the
indicator's changes; ``aclose`` stops intake.
"""

from __future__ import annotations

import asyncio
import itertools
from dataclasses import dataclass, field
from typing import Any

from bot.messages import InboundMessage, Reply, Session
from bot.transport import Capabilities, FeedResult, Sink


@dataclass(frozen=True, slots=True)
class Sent:
    """One reply as the transport received it."""

    session: Session
    reply: Reply

    @property
    def text(self) -> str:
        return self.reply.text


@dataclass
class MemoryTransport:
    name: str = "chat"
    capabilities: Capabilities = field(default_factory=lambda: Capabilities(typing=True))
    identities: tuple[str, ...] = ("@bot:example.org",)
    sent: list[Sent] = field(default_factory=list)
    typing_changes: list[tuple[Session, bool]] = field(default_factory=list)
    sink: Sink | None = None
    fail_with: Exception | None = None  # raised by every send (after recording the attempt)
    closed: bool = False
    _ids: itertools.count[int] = field(default_factory=itertools.count)
    _waiters: list[tuple[int, asyncio.Future[None]]] = field(default_factory=list)

    async def start(self, sink: Sink) -> None:
        self.sink, self.closed = sink, False

    async def send(self, session: Session, reply: Reply) -> str | None:
        self.sent.append(Sent(Session.of(session), reply))
        if self.fail_with is not None:
            raise self.fail_with
        for count, future in self._waiters:
            if len(self.sent) >= count and not future.done():
                future.set_result(None)
        return f"m{len(self.sent)}"

    async def wait_sent(self, count: int) -> list[Sent]:
        """Wait until ``count`` replies were sent in all; returns them all."""
        if len(self.sent) < count:
            future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._waiters.append((count, future))
            try:
                await future
            finally:
                self._waiters.remove((count, future))
        return list(self.sent)

    async def typing(self, session: Session, active: bool) -> None:
        self.typing_changes.append((Session.of(session), active))

    async def aclose(self) -> None:
        self.sink, self.closed = None, True

    async def say(
        self, room: str, sender: str, text: str, *, event_id: str = "", **extra: Any
    ) -> FeedResult:
        """Hand ``text`` from ``sender`` in ``room`` to the sink, as the platform would."""
        if self.sink is None:
            raise RuntimeError(f"{self.name} is not started")
        event_id = event_id or f"e{next(self._ids)}"
        msg = InboundMessage(self.name, room, sender, event_id, 0.0, text, **extra)
        return await self.sink.feed(msg)

    def texts(self, session: str | None = None) -> list[str]:
        """The texts sent, in order (to ``session`` only, when given)."""
        return [s.text for s in self.sent if session is None or s.session == session]
