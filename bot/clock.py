"""Injected time: the dispatcher, timers and backoff read time and schedule callbacks only here.

``LoopClock`` is the real one (the running asyncio loop's monotonic clock). ``VirtualClock``
lets tests move time by hand and runs due callbacks in deadline order, deterministically.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections.abc import Callable
from typing import Protocol


class TimerHandle(Protocol):
    def cancel(self) -> None: ...


class Clock(Protocol):
    """Monotonic time in seconds and one-shot callbacks at a deadline."""

    def now(self) -> float: ...

    def call_at(self, when: float, callback: Callable[[], None]) -> TimerHandle: ...

    async def sleep(self, seconds: float) -> None: ...


class LoopClock:
    """The running event loop's clock."""

    def now(self) -> float:
        return asyncio.get_running_loop().time()

    def call_at(self, when: float, callback: Callable[[], None]) -> TimerHandle:
        return asyncio.get_running_loop().call_at(when, callback)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


class _VirtualHandle:
    __slots__ = ("callback", "cancelled", "when")

    def __init__(self, when: float, callback: Callable[[], None]) -> None:
        self.when = when
        self.callback = callback
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class VirtualClock:
    """A clock that only moves when a test calls :meth:`advance`.

    Callbacks due at the same instant run in the order they were scheduled. Between two
    callbacks the event loop is given enough turns for woken tasks to settle.
    """

    def __init__(self, start: float = 0.0) -> None:
        self._now = start
        self._heap: list[tuple[float, int, _VirtualHandle]] = []
        self._order = itertools.count()

    def now(self) -> float:
        return self._now

    def call_at(self, when: float, callback: Callable[[], None]) -> TimerHandle:
        handle = _VirtualHandle(when, callback)
        heapq.heappush(self._heap, (when, next(self._order), handle))
        return handle

    async def sleep(self, seconds: float) -> None:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        def wake() -> None:
            if not future.done():
                future.set_result(None)

        handle = self.call_at(self._now + max(0.0, seconds), wake)
        try:
            await future
        finally:
            handle.cancel()

    def pending(self) -> int:
        """How many live callbacks are scheduled."""
        return sum(1 for _, _, h in self._heap if not h.cancelled)

    async def settle(self, turns: int = 20) -> None:
        """Give the event loop ``turns`` iterations so woken tasks run to their next await."""
        for _ in range(turns):
            await asyncio.sleep(0)

    async def advance(self, seconds: float) -> None:
        """Move time forward by ``seconds``, running every callback that falls due on the way."""
        target = self._now + seconds
        await self.settle()
        while self._heap and self._heap[0][0] <= target:
            when, _, handle = heapq.heappop(self._heap)
            if handle.cancelled:
                continue
            self._now = max(self._now, when)
            handle.callback()
            await self.settle()
        self._now = target
        await self.settle()

    async def run_until_idle(self, limit: float = 1e9) -> None:
        """Advance until no callback is scheduled (or ``limit`` seconds have passed)."""
        deadline = self._now + limit
        await self.settle()
        while True:
            live = [entry for entry in self._heap if not entry[2].cancelled]
            if not live:
                return
            nxt = min(live)[0]
            if nxt > deadline:
                return
            await self.advance(nxt - self._now)
