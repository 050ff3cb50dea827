"""A platform's "hold back until" window, shared by every request of one transport (R11).

A 429 with a ``Retry-After`` opens (or extends) the window; every send, retry and typing
notification waits for it first, so no request goes out inside it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable


class RateWindow:
    """Until when (on ``clock``) the platform asked us to send nothing."""

    def __init__(
        self,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.clock = clock
        self.sleep = sleep
        self.until = 0.0

    def block(self, seconds: float) -> None:
        """Hold back for ``seconds`` from now (a longer window already open stays)."""
        self.until = max(self.until, self.clock() + seconds)

    async def wait(self) -> None:
        """Return once no window is open (a window opened meanwhile is waited for too)."""
        while (delay := self.until - self.clock()) > 0:
            await self.sleep(delay)


def retry_after(value: str | None) -> float:
    """Seconds from a ``Retry-After`` header (1 when missing or unreadable, at most 1 h)."""
    try:
        seconds = float(value) if value else 1.0
    except ValueError:
        seconds = 1.0
    return min(max(seconds, 0.0), 3600.0) if seconds == seconds else 1.0
