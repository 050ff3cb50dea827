"""A platform's "hold back until" window, shared by every request of one transport (R11),
and the one reader of how long a 429 asks us to hold back (:func:`retry_after`).

A 429 with a ``Retry-After`` opens (or extends) the window; every send, retry and typing
notification waits for it first, so no request goes out inside it.
"""

from __future__ import annotations

import asyncio
import email.utils
import math
import time
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC
from typing import overload

RETRY_AFTER_DEFAULT_S = 1.0
"""The wait for a 429 that does not say how long (or says it unreadably)."""

RETRY_AFTER_CAP_S = 3600.0
"""The longest wait a ``Retry-After`` can impose; a longer one is cut to this."""


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


@overload
def retry_after(
    fields: Mapping[str, object],
    default: float = RETRY_AFTER_DEFAULT_S,
    *,
    now: Callable[[], float] = time.time,
) -> float: ...


@overload
def retry_after(
    fields: Mapping[str, object], default: None, *, now: Callable[[], float] = time.time
) -> float | None: ...


def retry_after(
    fields: Mapping[str, object],
    default: float | None = RETRY_AFTER_DEFAULT_S,
    *,
    now: Callable[[], float] = time.time,
) -> float | None:
    """Seconds a 429 (or 503) asks us to wait, read from a plain mapping of its headers.

    ``retry-after-ms`` (milliseconds) wins over ``retry-after`` (seconds, or an HTTP date
    measured from ``now``); names match in any case and values may be text or numbers, so
    an HTTP client's headers and a JSON body's fields both do. Guarantees: the result is
    within [0, :data:`RETRY_AFTER_CAP_S`]; ``default`` when neither field is there or
    readable (None lets the caller choose its own backoff).
    """
    lowered = {str(name).lower(): value for name, value in fields.items()}
    millis = _finite(lowered.get("retry-after-ms"))
    seconds = millis / 1000 if millis is not None else _seconds(lowered.get("retry-after"), now)
    if seconds is None:
        return default
    return min(max(seconds, 0.0), RETRY_AFTER_CAP_S)


def _seconds(value: object, now: Callable[[], float]) -> float | None:
    seconds = _finite(value)
    if seconds is not None or not isinstance(value, str):
        return seconds
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.timestamp() - now()


def _finite(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        return None
    try:
        number = float(value)
    except ValueError:
        return None
    return number if math.isfinite(number) else None
