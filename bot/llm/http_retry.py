"""Open a streaming HTTP request, retrying connect errors, 429 and 5xx before the body starts.

Guarantees: at most ``1 + max_retries`` attempts; a ``Retry-After`` (seconds, HTTP date, or
``retry-after-ms``, read by :func:`bot.ratewindow.retry_after`) is waited exactly, otherwise
exponential backoff with jitter; every wait goes through the injected ``sleep``; a 4xx other
than 429 is never retried. Once the caller holds the response no retry can happen, so a
streamed answer is never repeated.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import httpx

from bot.ratewindow import retry_after
from config.errors import MusherError, PermanentError, TransientError

Sleep = Callable[[float], Awaitable[None]]

_RETRYABLE_TRANSPORT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.RemoteProtocolError)
_MAX_ERROR_TEXT = 300


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How many times and how long to wait between attempts.

    ``jitter`` returns a number in [0, 1); a computed backoff is scaled into
    [50 %, 100 %] of ``min(max_delay_s, base_delay_s * 2**attempt)``. A ``Retry-After``
    longer than ``max_retry_after_s`` is not waited for: the error is raised at once.
    """

    max_retries: int = 3
    sleep: Sleep = asyncio.sleep
    base_delay_s: float = 0.5
    max_delay_s: float = 30.0
    max_retry_after_s: float = 60.0
    jitter: Callable[[], float] = random.random

    def delay(self, attempt: int, retry_after: float | None) -> float | None:
        """Seconds to wait before retry number ``attempt + 1``, or None to give up."""
        if attempt >= self.max_retries:
            return None
        if retry_after is not None:
            return retry_after if retry_after <= self.max_retry_after_s else None
        ceiling = min(self.max_delay_s, self.base_delay_s * 2.0**attempt)
        return ceiling * (0.5 + self.jitter() / 2)


@contextlib.asynccontextmanager
async def open_stream(
    client: httpx.AsyncClient,
    url: str,
    *,
    body: dict[str, Any],
    headers: dict[str, str],
    policy: RetryPolicy,
) -> AsyncIterator[httpx.Response]:
    """POST ``body`` as JSON and yield the successful (2xx) response, unread.

    Raises:
        TransientError: still a connect error, 429 or 5xx after the last retry; the message
            is ``"<status> <api message>"`` (or names the connection failure).
        PermanentError: any other non-2xx status, as ``"<status> <api message>"``.

    Leaving the block (normally, by an error or by cancellation) closes the response and
    its connection; a cancel during a backoff wait leaves nothing open.
    """
    attempt = 0
    while True:
        async with contextlib.AsyncExitStack() as stack:
            request = client.stream("POST", url, json=body, headers=headers)
            try:
                response = await stack.enter_async_context(request)
            except _RETRYABLE_TRANSPORT as exc:
                error: MusherError = TransientError(f"connection failed ({type(exc).__name__})")
            else:
                if response.is_success:
                    yield response
                    return
                error = await _api_error(response)
        wait = (
            policy.delay(attempt, error.retry_after) if isinstance(error, TransientError) else None
        )
        if wait is None:
            raise error
        attempt += 1
        await policy.sleep(wait)


async def _api_error(response: httpx.Response) -> MusherError:
    """The error for a non-2xx response, carrying the API's own message."""
    await response.aread()
    text = f"{response.status_code} {error_message(response)}"
    if response.status_code == 429 or response.status_code >= 500:
        return TransientError(text, retry_after(response.headers, None))
    return PermanentError(text)


def error_message(response: httpx.Response) -> str:
    """The human part of an API error body (OpenAI, Anthropic and Ollama shapes), else text."""
    try:
        data = response.json()
    except ValueError:
        data = None
    if isinstance(data, dict):
        error = data.get("error")
        if isinstance(error, dict) and isinstance(error.get("message"), str):
            return str(error["message"])
        if isinstance(error, str):
            return error
        if isinstance(data.get("message"), str):
            return str(data["message"])
    text = response.text.strip()[:_MAX_ERROR_TEXT]
    return text or response.reason_phrase
