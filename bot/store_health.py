"""Whether the database takes writes (R18): the reason of the last failed commit, until a
commit succeeds again. ``/readyz`` shows it; turns and the daemon's watch wait on it."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from config.errors import StoreError, StoreUnavailable

log = logging.getLogger("musher.db")

Sleep = Callable[[float], Awaitable[None]]


class StoreHealth:
    """Fed by the database's writer with every group's outcomes; never raises."""

    def __init__(self) -> None:
        self.reason: str | None = None  # why the last write failed, None while writes work
        self._failing = asyncio.Event()

    def observe(self, outcomes: Iterable[tuple[bool, Any]]) -> None:
        """Any committed write means the store works; else an unavailable one means it
        does not (a job's own refusal says nothing about the store)."""
        results = list(outcomes)
        if any(ok for ok, _ in results):
            self.succeeded()
            return
        for ok, value in results:
            if not ok and isinstance(value, StoreUnavailable):
                self.failed(str(value))
                return

    def failed(self, reason: str) -> None:
        if self.reason is None:
            log.error("the store is failing: %s", reason)
        self.reason = reason
        self._failing.set()

    def succeeded(self) -> None:
        if self.reason is not None:
            log.warning("the store takes writes again")
        self.reason = None
        self._failing.clear()

    def components(self) -> dict[str, str]:
        """For ``/readyz``: ``{"store": "failing: <reason>"}`` while failing, else nothing."""
        return {} if self.reason is None else {"store": f"failing: {self.reason}"}

    async def recovered(
        self,
        probe: Callable[[], Awaitable[None]],
        *,
        first_delay: float = 0.5,
        max_delay: float = 5.0,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        """Return once a write succeeds: at once when nothing failed, else probe with a
        doubling delay (``first_delay`` up to ``max_delay``). Cancelling stops the probing."""
        delay = first_delay
        while self.reason is not None:
            await sleep(delay)
            try:
                await probe()
            except (StoreError, OSError) as err:  # still failing, whatever the reason
                self.failed(str(err))
                delay = min(delay * 2, max_delay)

    async def watch(self, probe: Callable[[], Awaitable[None]]) -> None:
        """Forever: whenever the store fails, probe until it works again, so that
        ``/readyz`` recovers without waiting for traffic. Ends only when cancelled."""
        while True:
            await self._failing.wait()
            await self.recovered(probe)
