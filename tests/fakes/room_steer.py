"""A stand-in for a turn's steer (busy mode ``steer``): the test speaks for the room."""

from __future__ import annotations

import asyncio


class RoomSteer:
    """``say`` queues what the room says during the turn; ``take`` hands it all over."""

    def __init__(self) -> None:
        self.queued: list[str] = []
        self.arrived = asyncio.Event()
        self.closed = False

    def say(self, text: str) -> None:
        self.queued.append(text)
        self.arrived.set()

    async def take(self) -> str | None:
        self.arrived.clear()
        if self.closed or not self.queued:
            return None
        taken, self.queued = self.queued, []
        return "\n\n".join(taken)

    async def wait(self) -> None:
        await self.arrived.wait()

    def close(self) -> None:
        self.closed = True
