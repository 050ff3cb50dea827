"""HTTP mode: ``POST /webhooks/slack`` on the daemon's aiohttp server.

The raw body is read (up to ``[http] max_body_bytes``) and its signature checked here,
before Bolt or any parser sees it: a bad, missing or stale signature is counted
(``webhook_rejected``) and answered 401, whatever the headers hold. A verified request is
then handed on: an Events API ``event_callback`` (nearly all the traffic) straight to the
listener that Bolt would call (:meth:`~transports.slack.events.Listeners.on_event`, which
journals before the 200 ack, I1), anything else (``url_verification``, slash commands,
interactions) to the Bolt app.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from aiohttp import web
from slack_bolt.adapter.aiohttp import to_aiohttp_response
from slack_bolt.request.async_request import AsyncBoltRequest
from slack_bolt.response import BoltResponse

from bot.http import error, read_body
from bot.metrics import Metrics
from config.errors import StoreError, VerificationError
from transports.slack.verify import verify

log = logging.getLogger("musher.slack")

PATH = "/webhooks/slack"

Dispatch = Callable[[AsyncBoltRequest], Awaitable[BoltResponse]]
OnEvent = Callable[[dict[str, Any]], Awaitable[None]]


class Webhook:
    """The route's handler. ``dispatch`` (Bolt) and ``on_event`` (the events listener)
    are ``None`` until the transport has started."""

    def __init__(
        self,
        secret: str,
        metrics: Metrics,
        max_body_bytes: int,
        clock: Callable[[], float],
    ) -> None:
        self.secret = secret
        self.metrics = metrics
        self.max_body_bytes = max_body_bytes
        self.clock = clock
        self.dispatch: Dispatch | None = None
        self.on_event: OnEvent | None = None

    def mount(self, app: web.Application) -> None:
        app.router.add_post(PATH, self.handle)

    async def handle(self, request: web.Request) -> web.Response:
        """Verify, then let Bolt answer. Never a 5xx for anything the sender controls."""
        raw = await read_body(request, self.max_body_bytes)
        if isinstance(raw, web.Response):
            return raw
        headers = request.headers
        try:
            verify(
                self.secret,
                headers.get("X-Slack-Request-Timestamp"),
                headers.get("X-Slack-Signature"),
                raw,
                self.clock,
            )
        except VerificationError as err:
            self.metrics.webhook_rejected.inc("slack")
            log.warning("refused a request to %s: %s", PATH, err)
            return error(401, "invalid or stale Slack signature")
        if self.dispatch is None or self.on_event is None:
            return error(503, "musher is not ready for Slack yet")
        event = _event_callback(raw, request)
        if event is not None:
            try:
                await self.on_event(event)
            except StoreError as err:  # not journalled: Slack delivers the event again
                return error(503, f"musher cannot store messages right now: {err}")
            return web.Response(status=200)
        bolt_request = _bolt_request(raw, request)
        if bolt_request is None:
            return error(400, "the body is not a Slack payload")
        return await to_aiohttp_response(await self.dispatch(bolt_request))


def _bolt_request(raw: bytes, request: web.Request) -> AsyncBoltRequest | None:
    """Bolt's view of a verified request, or ``None`` when the body cannot be one."""
    try:
        text = raw.decode("utf-8")
        headers: dict[str, str | Sequence[str]] = {}
        for key, value in request.headers.items():
            headers[key.lower()] = value
        bolt_request = AsyncBoltRequest(body=text, query=request.query_string, headers=headers)
    except Exception as err:  # the body parsers raise many kinds; all mean "not a payload"
        log.warning("a signed request to %s has an unreadable body: %r", PATH, err)
        return None
    return bolt_request if isinstance(bolt_request.body, dict) else None


def _event_callback(raw: bytes, request: web.Request) -> dict[str, Any] | None:
    """The body of an Events API ``event_callback``, or ``None`` for anything else (which
    Bolt handles, and refuses when it is not a Slack payload)."""
    if request.content_type != "application/json":
        return None
    try:
        body = json.loads(raw)
    except ValueError:
        return None
    return body if isinstance(body, dict) and body.get("type") == "event_callback" else None
