"""Outbound to Slack: ``chat.postMessage`` that survives 429s and 5xx without posting twice.

Every message carries our idempotency key in its metadata
(``{"event_type": "musher_reply", "event_payload": {"key": …}}``). The rules:

- 429: nothing was posted. Wait ``Retry-After`` — no request of ours goes out inside that
  window, from this send or any other — then post again.
- 5xx, timeout or dropped connection: the message may have been posted. Look for a recent
  message carrying our key (``conversations.history`` / ``.replies`` with metadata); post
  again only when that lookup positively says it is not there.
- anything else (``not_in_channel``, ``invalid_auth``…) is permanent: raise at once.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any

import aiohttp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.errors import PermanentError, TransientError
from bot.metrics import Metrics
from bot.ratewindow import RateWindow, retry_after

log = logging.getLogger("musher.slack")

EVENT_TYPE = "musher_reply"
BACKOFF_S = (1.0, 2.0, 4.0, 8.0)
MAX_RATE_LIMITS = 5
LOOKBACK_S = 120.0  # how far before the first attempt a committed copy is looked for
_AMBIGUOUS = (aiohttp.ClientError, TimeoutError)


class Ambiguous(Exception):
    """The request may or may not have taken effect (5xx, timeout, dropped connection)."""


class Poster:
    """Posts messages with the rules above; counts each retry in ``sends_retried``."""

    def __init__(
        self,
        client: AsyncWebClient,
        metrics: Metrics,
        limit: RateWindow | None = None,
        backoff: Sequence[float] = BACKOFF_S,
    ) -> None:
        self.client = client
        self.metrics = metrics
        self.limit = limit or RateWindow()
        self.backoff = tuple(backoff)

    async def post(self, channel: str, text: str, thread_ts: str | None, key: str) -> str:
        """Post ``text`` once; returns its ``ts``.

        Raises :class:`PermanentError` for a refusal and :class:`TransientError` when Slack
        stayed unavailable through every retry. On cancel, at most one request is in flight
        and nothing else is sent.
        """
        since = time.time() - LOOKBACK_S
        args: dict[str, Any] = {"channel": channel, "text": text}
        if thread_ts:
            args["thread_ts"] = thread_ts
        if key:
            args["metadata"] = {"event_type": EVENT_TYPE, "event_payload": {"key": key}}
        for delay in (*self.backoff, None):
            try:
                response = await self.call("chat.postMessage", args)
                return str(response.get("ts", ""))
            except Ambiguous as err:
                if delay is None or not key:
                    raise TransientError(f"slack: chat.postMessage failed: {err}") from None
                log.warning("chat.postMessage to %s: %s; checking before retrying", channel, err)
            self.metrics.sends_retried.inc("slack")
            await self.limit.sleep(delay)
            found = await self._find(channel, thread_ts, key, since)
            if found is not None:
                log.info("chat.postMessage to %s had gone through (ts %s)", channel, found)
                return found
        raise AssertionError("unreachable")

    async def call(self, method: str, args: dict[str, Any]) -> dict[str, Any]:
        """One Web API call; 429s are waited out here, other failures raised.

        Raises :class:`Ambiguous` for a 5xx, timeout or connection error and
        :class:`PermanentError` for Slack's refusals.
        """
        for _ in range(MAX_RATE_LIMITS):
            await self.limit.wait()
            try:
                if method == "chat.postMessage":
                    response = await self.client.api_call(method, json=args)
                else:
                    response = await self.client.api_call(method, http_verb="GET", params=args)
                return dict(response.data) if isinstance(response.data, dict) else {}
            except SlackApiError as err:
                status = err.response.status_code
                if status == 429:
                    wait = retry_after(err.response.headers.get("Retry-After"))
                    log.warning("slack %s rate limited; waiting %.0f s", method, wait)
                    self.limit.block(wait)
                    self.metrics.sends_retried.inc("slack")
                    continue
                if status >= 500:
                    raise Ambiguous(f"HTTP {status}") from None
                error = err.response.get("error") if isinstance(err.response.data, dict) else None
                raise PermanentError(
                    f"slack: {method} failed: {error or f'HTTP {status}'}"
                ) from None
            except _AMBIGUOUS as err:
                raise Ambiguous(f"{type(err).__name__}: {err}") from None
        raise TransientError(f"slack: {method} still rate limited after {MAX_RATE_LIMITS} waits")

    async def _find(
        self, channel: str, thread_ts: str | None, key: str, since: float
    ) -> str | None:
        """The ``ts`` of our message with ``key``, ``None`` if it is surely not there.

        Raises :class:`TransientError` if Slack cannot tell us (never guesses "absent").
        """
        args: dict[str, Any] = {
            "channel": channel,
            "oldest": f"{since:.6f}",
            "include_all_metadata": "true",
            "limit": 100,
        }
        method = "conversations.history"
        if thread_ts:
            method, args["ts"] = "conversations.replies", thread_ts
        for delay in (*self.backoff, None):
            try:
                data = await self.call(method, args)
                break
            except Ambiguous as err:
                if delay is None:
                    raise TransientError(
                        f"slack: cannot tell whether a reply reached {channel} ({err}); "
                        "not posting it again"
                    ) from None
                await self.limit.sleep(delay)
        for message in data.get("messages") or ():
            meta = message.get("metadata") if isinstance(message, dict) else None
            if isinstance(meta, dict) and meta.get("event_type") == EVENT_TYPE:
                payload = meta.get("event_payload")
                if isinstance(payload, dict) and payload.get("key") == key:
                    return str(message.get("ts", ""))
        return None


async def respond(session: aiohttp.ClientSession, url: str, text: str, limit: RateWindow) -> None:
    """POST an ephemeral ``text`` to a slash command's ``response_url``, once.

    A 429 is waited out (``limit`` is this endpoint's own window) and retried; any other
    failure raises, since a retry after a 5xx could show the text twice.
    """
    body = {"response_type": "ephemeral", "text": text}
    for _ in range(MAX_RATE_LIMITS):
        await limit.wait()
        try:
            async with session.post(url, json=body) as response:
                if response.status == 429:
                    limit.block(retry_after(response.headers.get("Retry-After")))
                    continue
                if response.status >= 300:
                    raise TransientError(f"slack: response_url answered HTTP {response.status}")
                return
        except _AMBIGUOUS as err:
            raise TransientError(f"slack: response_url failed: {err}") from None
    raise TransientError(f"slack: response_url still rate limited after {MAX_RATE_LIMITS} waits")
