"""Live fan-out of what happens in a room (new log lines, the bot working) to SSE listeners.

Only committed state is published: the room log line is written first, then announced.
A slow listener never blocks the publisher: its queue is bounded and, when full, the
listener is told to resynchronise from the room log (``Resync``).
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from bot.journal import LogEntry


@dataclass(frozen=True, slots=True)
class Typing:
    session: str
    active: bool


@dataclass(frozen=True, slots=True)
class Resync:
    """The listener fell behind; reload history from the room log."""


@dataclass(frozen=True, slots=True)
class Closed:
    """The daemon is shutting down; listeners should end their streams."""


FeedEvent = LogEntry | Typing | Resync | Closed

_QUEUE_SIZE = 256


class RoomFeed:
    """Publish/subscribe per session. Subscriptions are context managers; nothing leaks."""

    def __init__(self) -> None:
        self._subscribers: defaultdict[str, set[asyncio.Queue[FeedEvent]]] = defaultdict(set)
        self._typing: set[str] = set()

    @contextmanager
    def subscribe(self, session: str) -> Iterator[asyncio.Queue[FeedEvent]]:
        queue: asyncio.Queue[FeedEvent] = asyncio.Queue(_QUEUE_SIZE)
        self._subscribers[session].add(queue)
        try:
            yield queue
        finally:
            listeners = self._subscribers.get(session)
            if listeners is not None:
                listeners.discard(queue)
                if not listeners:
                    del self._subscribers[session]

    def publish(self, session: str, event: FeedEvent) -> None:
        if isinstance(event, Typing):
            if event.active:
                self._typing.add(session)
            else:
                self._typing.discard(session)
        for queue in self._subscribers.get(session, ()):
            try:
                queue.put_nowait(event)
            except asyncio.QueueFull:
                _drain(queue)
                queue.put_nowait(Resync())

    def close(self) -> None:
        """Tell every listener to finish (shutdown step one: stop intake)."""
        for listeners in self._subscribers.values():
            for queue in listeners:
                _drain(queue)
                queue.put_nowait(Closed())

    def typing(self, session: str) -> bool:
        """Whether the bot is working on an answer in ``session`` right now."""
        return session in self._typing

    def listeners(self) -> int:
        return sum(len(s) for s in self._subscribers.values())


def _drain(queue: asyncio.Queue[FeedEvent]) -> None:
    while not queue.empty():
        queue.get_nowait()
