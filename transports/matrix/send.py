"""Idempotent sends: one transaction id per reply chunk, retried on 5xx and network errors.

The homeserver remembers a device's transaction ids, so a retry of a send that was
committed but reported failed (a 502 from a proxy, a dropped connection) returns the
first event instead of posting twice. nio itself waits out 429 ``M_LIMIT_EXCEEDED`` for
``retry_after_ms``; a 429 that outlasts nio's patience is waited out here too. Every 429
opens a :class:`RateWindow` that holds back this client's other sends and typing
notifications until it ends (R11: no request inside a Retry-After window).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
from nio import AsyncClient, ErrorResponse, RoomSendResponse

from bot.metrics import Metrics
from bot.ratewindow import RateWindow, retry_after
from config.errors import PermanentError, TransientError
from transports.matrix.html import render
from transports.matrix.login import UNKNOWN_TOKEN, describe

log = logging.getLogger("musher.matrix")

ATTEMPTS = 5
FIRST_DELAY_S = 0.5
MAX_DELAY_S = 8.0
NIO_RETRY_AFTER_S = 5.0  # what nio itself waits when a 429 does not say (0 says nothing)


def hold_back(window: RateWindow, retry_after_ms: int | None) -> None:
    """Open ``window`` for a 429's ``retry_after_ms`` (nio's default when it says none)."""
    window.block(retry_after({"retry-after-ms": retry_after_ms or None}, NIO_RETRY_AFTER_S))


def watch_rate_limits(window: RateWindow) -> Callable[[ErrorResponse], Awaitable[None]]:
    """A nio response callback: every 429 the client sees opens ``window``."""

    async def on_response(resp: ErrorResponse) -> None:
        if resp.status_code == "M_LIMIT_EXCEEDED":
            log.warning("rate limited by the homeserver for %s ms", resp.retry_after_ms)
            hold_back(window, resp.retry_after_ms)

    return on_response


def transaction_id(prefix: str, key: str) -> str:
    """A stable id for the chunk ``key``; ``prefix`` is this data dir's own (random)."""
    return f"musher.{prefix}.{hashlib.sha256(key.encode()).hexdigest()[:32]}"


def notice(text: str) -> dict[str, Any]:
    """An ``m.notice`` with the Markdown rendered to HTML and the plain text kept."""
    return {
        "msgtype": "m.notice",
        "body": text,
        "format": "org.matrix.custom.html",
        "formatted_body": render(text),
    }


async def send_event(
    client: AsyncClient,
    room_id: str,
    content: dict[str, Any],
    tx_id: str,
    metrics: Metrics,
    renew: Callable[[], Awaitable[bool]],
    window: RateWindow,
) -> str:
    """Send ``content`` to ``room_id`` under ``tx_id``; return the event id, or raise."""
    delay = FIRST_DELAY_S
    for attempt in range(1, ATTEMPTS + 1):
        wait = delay
        await window.wait()
        try:
            resp = await client.room_send(
                room_id, "m.room.message", content, tx_id=tx_id, ignore_unverified_devices=True
            )
        except (aiohttp.ClientError, TimeoutError, OSError) as err:
            problem = f"{type(err).__name__}: {err}"
        else:
            if isinstance(resp, RoomSendResponse):
                return str(resp.event_id)
            status = resp.transport_response.status if resp.transport_response else 0
            problem = describe(resp)
            if resp.status_code == UNKNOWN_TOKEN:
                if not await renew():
                    raise PermanentError(f"matrix: sending to {room_id} failed: {problem}")
                wait = 0.0
            elif status == 429 or resp.status_code == "M_LIMIT_EXCEEDED":
                hold_back(window, resp.retry_after_ms)
                wait = 0.0  # window.wait() does it
            elif 0 < status < 500:
                raise PermanentError(f"matrix: sending to {room_id} failed: {problem}")
        if attempt == ATTEMPTS:
            raise TransientError(
                f"matrix: sending to {room_id} failed {ATTEMPTS} times; last: {problem}"
            )
        log.warning(
            "sending to %s failed (%s); retry %d in %.1f s", room_id, problem, attempt, wait
        )
        metrics.sends_retried.inc("matrix")
        await asyncio.sleep(wait)
        delay = min(delay * 2, MAX_DELAY_S)
    raise AssertionError("unreachable")
