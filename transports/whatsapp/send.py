"""Outbound to WhatsApp, whichever API carries it: at most once, inside the 24-hour window,
never inside a rate-limit window.

- Idempotent: each chunk's ``Reply.key`` is written to ``transport_state`` *before* the
  request goes out, in one write that also says whether it was there already (then the
  send is skipped). Neither API takes an idempotency key, so a request that failed
  ambiguously (5xx, dropped connection) is not sent again: a reply may be lost, never
  shown twice (R11).
- 24-hour customer-service window: free-form text only reaches a number that wrote within
  the last 24 h. Outside it nothing is sent; the log says why and ``/readyz`` lists the
  number (it clears when the number writes again).
- 429 and the APIs' rate-limit error codes open the transport's :class:`RateWindow`;
  nothing is sent until it closes, then the send is tried again.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Protocol

from bot.kv import TransportState
from bot.metrics import Metrics
from bot.ratewindow import RateWindow
from config.errors import PermanentError, TransientError
from transports.whatsapp.wire import TRANSPORT

log = logging.getLogger("musher.whatsapp")

WINDOW_S = 24 * 3600
MAX_RATE_LIMITS = 5
KEEP_KEYS_S = 8 * 24 * 3600  # sent keys are kept for 8 days, then forgotten
SENT, HEARD = "sent:", "heard:"
HEARD_SLACK_S = 600.0  # "last wrote" is written to the database at most every 10 min


class RateLimited(Exception):
    """Nothing was sent; try again after ``seconds``."""

    def __init__(self, seconds: float) -> None:
        super().__init__(f"rate limited for {seconds:g} s")
        self.seconds = seconds


class OutsideWindow(Exception):
    """The API refused free-form text: the number has not written within 24 hours."""


class Api(Protocol):
    async def post(self, number: str, text: str) -> str:
        """Send ``text`` to ``number`` once; return the platform's message id.

        Raises :class:`RateLimited`, :class:`OutsideWindow`, :class:`PermanentError`, or
        :class:`TransientError` when the outcome is unknown.
        """
        ...


class Outbound:
    """Sends through ``api`` with the rules above."""

    def __init__(
        self,
        api: Api,
        state: TransportState,
        metrics: Metrics,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.api = api
        self.state = state
        self.metrics = metrics
        self.clock = clock
        self.window = RateWindow()
        self.outside: set[str] = set()  # numbers whose window has closed
        self._heard: dict[str, float] = {}  # number → when it last wrote (this run)
        self._stored: dict[str, float | None] = {}  # number → what transport_state has

    def health(self) -> str:
        if not self.outside:
            return "ok"
        numbers = ", ".join(sorted(self.outside)[:5])
        return f"ok; replies held for {numbers}: more than 24 h since they last wrote"

    async def heard(self, number: str, at: float) -> None:
        """``number`` wrote at ``at``: its 24-hour window is open (again).

        Kept in memory; written to ``transport_state`` (for the next run) only when it moved
        on by more than :data:`HEARD_SLACK_S`, so intake rarely pays for a second write. A
        window read back after a restart may thus close up to that much early, never late.
        """
        stored = await self._last_heard(number)
        if at > self._heard.get(number, 0.0):
            self._heard[number] = at
        if stored is None or at - stored > HEARD_SLACK_S:
            await self.state.put(TRANSPORT, HEARD + number, repr(at))
            self._stored[number] = at
        if self.clock() - at < WINDOW_S:
            self.outside.discard(number)

    async def send(self, number: str, text: str, key: str) -> str | None:
        """Send ``text`` to ``number`` unless ``key`` was sent before; see the module."""
        closed = await self._window_closed(number)
        if closed is not None:
            if await self.state.get(TRANSPORT, SENT + key) is None:
                raise closed
        elif await self.state.claim(TRANSPORT, SENT + key, repr(self.clock())):
            return await self._post(number, text)
        log.info("whatsapp: %s was already sent; not sending it again", key)
        return None

    async def _post(self, number: str, text: str) -> str:
        """Post (the key is claimed), waiting out rate limits."""
        for _ in range(MAX_RATE_LIMITS):
            await self.window.wait()
            try:
                return await self.api.post(number, text)
            except RateLimited as err:
                log.warning("whatsapp: rate limited; holding every send for %g s", err.seconds)
                self.window.block(err.seconds)
                self.metrics.sends_retried.inc(TRANSPORT)
            except OutsideWindow:
                self.outside.add(number)
                raise PermanentError(
                    f"whatsapp: {number} must write first (re-engagement, code 131047/63016):"
                    " free-form replies are allowed only within 24 h of their last message"
                ) from None
        raise TransientError(f"whatsapp: still rate limited after {MAX_RATE_LIMITS} waits")

    async def forget_old_keys(self) -> None:
        await self.state.forget(TRANSPORT, SENT, self.clock() - KEEP_KEYS_S)

    async def _last_heard(self, number: str) -> float | None:
        """When ``number`` last wrote as ``transport_state`` has it (read once per run)."""
        if number not in self._stored:
            value = await self.state.get(TRANSPORT, HEARD + number)
            self._stored[number] = float(value) if value is not None else None
        return self._stored[number]

    async def _window_closed(self, number: str) -> PermanentError | None:
        """None while ``number``'s 24-hour window is open, else the error to raise."""
        stored = await self._last_heard(number)
        last = max(self._heard.get(number, 0.0), stored or 0.0) or None
        if last is not None and self.clock() - last < WINDOW_S:
            return None
        self.outside.add(number)
        when = "never" if last is None else f"{(self.clock() - last) / 3600:.0f} h ago"
        return PermanentError(
            f"whatsapp: not sending to {number}: they last wrote {when}, and WhatsApp allows"
            " free-form replies only within 24 h of a user's message"
        )
