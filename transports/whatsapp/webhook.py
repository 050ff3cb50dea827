"""The webhook routes: ``GET|POST /webhooks/whatsapp`` (Meta) and ``POST /webhooks/twilio``.

Each POST is read raw (up to ``[http] max_body_bytes``), its signature checked (401 and
``webhook_rejected`` otherwise), parsed whole (400 and nothing journalled if malformed),
then its text messages are handed to ingress one by one — journalled before the 200 that
acknowledges them (I1). Senders of images, audio, locations or reactions get one polite
note a day. Status callbacks are only logged (a failure with its reason).
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import time
from collections.abc import Callable, Collection, Mapping
from typing import Any
from urllib.parse import parse_qsl

from aiohttp import web

from bot.http import error, read_body
from bot.metrics import Metrics
from bot.transport import Sink
from config.errors import VerificationError
from transports.whatsapp.meta import RE_ENGAGEMENT
from transports.whatsapp.send import Outbound
from transports.whatsapp.verify import verify_meta, verify_twilio
from transports.whatsapp.wire import (
    TRANSPORT,
    Inbound,
    Malformed,
    e164,
    meta_inbound,
    twilio_inbound,
)

log = logging.getLogger("musher.whatsapp")

META_PATH = "/webhooks/whatsapp"
TWILIO_PATH = "/webhooks/twilio"
EMPTY_TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response></Response>'
TEXT_ONLY = "Sorry, I can only read text messages. Please write your request as text."


class Intake:
    """What both routes do with a verified, parsed delivery. ``sink`` is ``None`` until the
    transport has started (and after it stopped)."""

    def __init__(
        self,
        outbound: Outbound,
        numbers: Collection[str],
        people: Collection[str],
        metrics: Metrics,
        max_body_bytes: int,
        track: Callable[[asyncio.Task[Any]], None],
    ) -> None:
        self.outbound = outbound
        self.numbers = frozenset(numbers)  # allowed_numbers: the senders served
        self.people = frozenset(people)  # allowed_users and admins: who gets a note
        self.metrics = metrics
        self.max_body_bytes = max_body_bytes
        self.track = track
        self.sink: Sink | None = None

    def served(self, number: str) -> bool:
        return not self.numbers or number in self.numbers

    async def take(self, inbound: Inbound) -> web.Response | None:
        """Hand in ``inbound``; ``None`` when done, else the answer that says why not."""
        if self.sink is None:
            return error(503, "musher is not ready for WhatsApp yet")
        try:
            for msg in inbound.messages:
                if self.served(msg.sender):
                    await self.outbound.heard(msg.sender, msg.ts)
                    await self.sink.feed(msg)
            for number in dict.fromkeys(inbound.other):
                if self.served(number) and (not self.people or number in self.people):
                    await self.outbound.heard(number, time.time())
                    self._note(number)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("whatsapp: could not take a delivery; the platform will retry it")
            return error(503, "musher could not take this delivery now; retry later")
        for status in inbound.statuses:
            self._status(status)
        return None

    def rejected(self, err: VerificationError, path: str) -> web.Response:
        self.metrics.webhook_rejected.inc(TRANSPORT)
        log.warning("refused a request to %s: %s", path, err)
        return error(401, "invalid signature")

    def _note(self, number: str) -> None:
        day = int(time.time() // 86400)
        send = self.outbound.send(number, TEXT_ONLY, f"text-only:{number}:{day}")
        self.track(asyncio.create_task(send, name=f"whatsapp-text-only-{number}"))

    def _status(self, status: Mapping[str, Any]) -> None:
        if status.get("status") != "failed":
            return
        errors = status.get("errors")
        errors = errors if isinstance(errors, list) else []
        codes = [e.get("code") for e in errors if isinstance(e, dict)]
        recipient = status.get("recipient_id")
        log.warning("whatsapp: message %s to %s failed: %s", status.get("id"), recipient, errors)
        if RE_ENGAGEMENT in codes and isinstance(recipient, str):
            with contextlib.suppress(Malformed):
                self.outbound.outside.add(e164(recipient))


class MetaWebhook:
    """``GET`` answers Meta's verification handshake; ``POST`` takes deliveries."""

    def __init__(self, intake: Intake, app_secret: str, verify_token: str) -> None:
        self.intake = intake
        self.app_secret = app_secret
        self.verify_token = verify_token

    def mount(self, app: web.Application) -> None:
        app.router.add_get(META_PATH, self.challenge)
        app.router.add_post(META_PATH, self.handle)

    async def challenge(self, request: web.Request) -> web.Response:
        query = request.query
        token = query.get("hub.verify_token", "").encode("utf-8", "replace")
        if query.get("hub.mode") == "subscribe" and hmac.compare_digest(
            token, self.verify_token.encode()
        ):
            return web.Response(text=query.get("hub.challenge", ""))
        return error(403, "wrong hub.mode or hub.verify_token")

    async def handle(self, request: web.Request) -> web.Response:
        raw = await read_body(request, self.intake.max_body_bytes)
        if isinstance(raw, web.Response):
            return raw
        try:
            verify_meta(self.app_secret, request.headers.get("X-Hub-Signature-256"), raw)
        except VerificationError as err:
            return self.intake.rejected(err, META_PATH)
        try:
            inbound = meta_inbound(json.loads(raw))
        except (UnicodeDecodeError, json.JSONDecodeError, Malformed) as err:
            return error(400, f"not a WhatsApp webhook payload: {err}")
        return await self.intake.take(inbound) or web.Response(text="ok")


class TwilioWebhook:
    """``POST`` takes Twilio's form posts and answers with empty TwiML at once."""

    def __init__(self, intake: Intake, auth_token: str, public_url: str | None) -> None:
        self.intake = intake
        self.auth_token = auth_token
        self.public_url = public_url

    def mount(self, app: web.Application) -> None:
        app.router.add_post(TWILIO_PATH, self.handle)

    async def handle(self, request: web.Request) -> web.Response:
        raw = await read_body(request, self.intake.max_body_bytes)
        if isinstance(raw, web.Response):
            return raw
        try:
            params = parse_qsl(
                raw.decode("utf-8"), keep_blank_values=True, strict_parsing=bool(raw)
            )
        except (UnicodeDecodeError, ValueError):
            params = None
        url = self.public_url or str(request.url)
        try:
            verify_twilio(
                self.auth_token, url, params or [], request.headers.get("X-Twilio-Signature")
            )
        except VerificationError as err:
            return self.intake.rejected(err, TWILIO_PATH)
        try:
            if params is None:
                raise Malformed("the body is not a form")
            inbound = twilio_inbound(dict(params))
        except Malformed as err:
            return error(400, f"not a Twilio message: {err}")
        answer = await self.intake.take(inbound)
        return answer or web.Response(text=EMPTY_TWIML, content_type="text/xml")
