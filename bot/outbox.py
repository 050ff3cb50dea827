"""Everything the bot says goes through here: split to the transport's limit, sent, logged."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import uuid
from typing import Protocol

from bot.feed import RoomFeed, Typing
from bot.journal import Journal
from bot.messages import Reply, Session
from bot.metrics import Metrics
from bot.paragraphs import split_text
from bot.transport import Transport
from pipeline.storage import Conn

log = logging.getLogger("musher.outbox")


class Fence(Protocol):
    """A turn's guard (:class:`bot.room_leases.RoomFence`): ``check()`` before a send, and
    the fence of the write that logs it; both raise to say the turn must stop."""

    def check(self) -> object: ...

    def __call__(self, conn: Conn, /) -> None: ...


class Outbox:
    """Delivers to the transports :meth:`attach` was given, by the session's transport name."""

    def __init__(self, journal: Journal, feed: RoomFeed, metrics: Metrics, bot_name: str) -> None:
        self.journal = journal
        self.feed = feed
        self.metrics = metrics
        self.bot_name = bot_name
        self._transports: dict[str, Transport] = {}

    def attach(self, transport: Transport) -> None:
        """Deliver ``transport.name``'s sessions through ``transport`` from now on."""
        self._transports[transport.name] = transport

    async def send(self, key: str, reply: Reply, fence: Fence | None = None) -> None:
        """Deliver ``reply`` to ``session`` in chunks the transport accepts, in order.

        A delivery failure is logged and counted, never raised to the caller: the turn or
        command that produced the reply has already happened. Every chunk delivered (or
        attempted) is in the room log. A ``fence`` (a turn under a room lease) is checked
        before each chunk goes out and guards its log write; what it raises passes. Chunk
        ``i`` gets the key ``<reply.key>.<i>`` (a random base when the reply has none), so a
        transport's retries of one chunk are idempotent.
        """
        session = Session.of(key)
        transport = self._transports.get(session.transport)
        limit = transport.capabilities.max_length if transport else 4000
        base = reply.key or uuid.uuid4().hex
        for i, chunk in enumerate(split_text(reply.text, limit)):
            if fence is not None:
                fence.check()
            if transport is not None:
                try:
                    part = dataclasses.replace(reply, text=chunk, key=f"{base}.{i}")
                    await transport.send(session, part)
                except asyncio.CancelledError:
                    raise
                except Exception:
                    log.exception("sending to %s failed", session)
                    self.metrics.sends_failed.inc(transport.name)
            else:
                log.warning("no transport for %s; reply only logged", session)
            entry = await self.journal.log_bot(session, self.bot_name, chunk, fence)
            self.feed.publish(session, entry)

    async def typing(self, key: str, active: bool) -> None:
        """Show or hide the "working" indicator; failures are logged only."""
        session = Session.of(key)
        self.feed.publish(session, Typing(session, active))
        transport = self._transports.get(session.transport)
        if transport is None or not transport.capabilities.typing:
            return
        try:
            await transport.typing(session, active)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.warning("typing indicator failed in %s", session, exc_info=True)
