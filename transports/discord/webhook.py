"""The optional HTTP interactions endpoint: ``POST /webhooks/discord``.

Used when the application's Interactions Endpoint URL points at musher. The raw body is
read (up to ``[http] max_body_bytes``) and its Ed25519 signature checked before anything
parses it: a bad, missing or stale signature is counted (``webhook_rejected``) and answered
401. PING gets PONG; an application command gets its first response in the HTTP answer,
and its later replies as follow-ups (see :mod:`transports.discord.interactions`).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from typing import Any

from aiohttp import web
from nacl.signing import VerifyKey

from bot.http import error, read_body
from bot.metrics import Metrics
from config.errors import VerificationError
from transports.discord.interactions import (
    FollowUp,
    Interactions,
    flush,
    message_payload,
)
from transports.discord.verify import verify
from transports.discord.wire import InteractionIn, interaction_in

log = logging.getLogger("musher.discord")

PATH = "/webhooks/discord"
PING = 1
UNSUPPORTED = "musher only understands its slash commands here."

MakeFollowUp = Callable[[InteractionIn], FollowUp]


class Endpoint:
    """The route's handler; ``interactions`` is ``None`` until the transport has started."""

    def __init__(
        self,
        key: VerifyKey,
        metrics: Metrics,
        max_body_bytes: int,
        clock: Callable[[], float],
        track: Callable[[asyncio.Task[None]], None],
    ) -> None:
        self.key = key
        self.metrics = metrics
        self.max_body_bytes = max_body_bytes
        self.clock = clock
        self.track = track
        self.interactions: Interactions | None = None
        self.follow_up: MakeFollowUp | None = None

    def mount(self, app: web.Application) -> None:
        app.router.add_post(PATH, self.handle)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        """Verify, then answer. Never a 5xx for anything the sender controls."""
        raw = await read_body(request, self.max_body_bytes)
        if isinstance(raw, web.Response):
            return raw
        headers = request.headers
        try:
            verify(
                self.key,
                headers.get("X-Signature-Timestamp"),
                headers.get("X-Signature-Ed25519"),
                raw,
                self.clock,
            )
        except VerificationError as err:
            self.metrics.webhook_rejected.inc("discord")
            log.warning("refused a request to %s: %s", PATH, err)
            return error(401, "invalid request signature")
        try:
            body = json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError):
            return error(400, "the body is not JSON")
        if not isinstance(body, dict):
            return error(400, "the body is not an interaction")
        if body.get("type") == PING:
            return web.json_response({"type": PING})
        return await self._command(request, body)

    async def _command(self, request: web.Request, body: dict[str, Any]) -> web.StreamResponse:
        if self.interactions is None or self.follow_up is None:
            return error(503, "musher is not ready for Discord yet")
        it = interaction_in(body)
        if it is None:
            if body.get("type") in (3, 4, 5):  # components, autocomplete, modals
                return web.json_response(message_payload(UNSUPPORTED, True))
            return error(400, "the body is not an application command interaction")
        payload, handle = await self.interactions.answer(it, self.follow_up(it))
        response = web.json_response(payload)
        try:
            await response.prepare(request)
            await response.write_eof()
        finally:  # replies still to come follow up (or fail) either way
            if handle is not None:
                name = f"discord-follow-up-{it.id}"
                self.track(asyncio.create_task(flush(handle), name=name))
        return response
