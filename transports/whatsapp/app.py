"""The WhatsApp transport: ``create(ctx)`` for the daemon, and the Transport it returns.

One provider at a time: ``meta`` (the Cloud API; webhooks on ``/webhooks/whatsapp``) or
``twilio`` (``/webhooks/twilio``). A session is a phone number (``whatsapp:+4477…``).
Inbound: :mod:`transports.whatsapp.webhook`. Outbound: :mod:`transports.whatsapp.send`,
through :mod:`~transports.whatsapp.meta` or :mod:`~transports.whatsapp.twilio`.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from typing import Any

from aiohttp import web

from bot.messages import Reply, Session
from bot.transport import Capabilities, Sink, TransportContext
from config.errors import PermanentError
from config.models import WhatsAppConfig
from transports.whatsapp.meta import GraphApi
from transports.whatsapp.send import Outbound
from transports.whatsapp.twilio import TwilioApi
from transports.whatsapp.webhook import Intake, MetaWebhook, TwilioWebhook
from transports.whatsapp.wire import TRANSPORT

log = logging.getLogger("musher.whatsapp")

META_LIMIT, TWILIO_LIMIT = 4096, 1600  # L3


def create(ctx: TransportContext) -> WhatsAppTransport:
    """Factory used by the composition root."""
    return WhatsAppTransport(ctx, ctx.settings.transports.whatsapp)


class WhatsAppTransport:
    name = TRANSPORT

    def __init__(self, ctx: TransportContext, cfg: WhatsAppConfig) -> None:
        self.cfg = cfg
        self.identities: tuple[str, ...] = ()
        self.capabilities = Capabilities(
            max_length=META_LIMIT if cfg.provider == "meta" else TWILIO_LIMIT
        )
        self.api: GraphApi | TwilioApi
        self.api = GraphApi(cfg.meta) if cfg.provider == "meta" else TwilioApi(cfg.twilio)
        self.outbound = Outbound(self.api, ctx.state, ctx.metrics)
        people = [*cfg.allowed_users, *(cfg.admins or [])] if cfg.allowed_users else []
        self.intake = Intake(
            self.outbound,
            cfg.allowed_numbers,
            people,
            ctx.metrics,
            ctx.settings.http.max_body_bytes,
            self._track,
        )
        self.webhook = self._webhook()
        self._tasks: set[asyncio.Task[Any]] = set()

    def _webhook(self) -> MetaWebhook | TwilioWebhook:
        """The route of the configured provider; refuses to start without its secrets."""
        if self.cfg.provider == "meta":
            meta = self.cfg.meta
            if meta.app_secret is None or meta.verify_token is None:
                raise PermanentError(
                    "transports.whatsapp.meta: app_secret and verify_token are required"
                )
            secret, token = meta.app_secret.get_secret_value(), meta.verify_token.get_secret_value()
            return MetaWebhook(self.intake, secret, token)
        twilio = self.cfg.twilio
        if twilio.auth_token is None:
            raise PermanentError("transports.whatsapp.twilio: auth_token is required")
        return TwilioWebhook(self.intake, twilio.auth_token.get_secret_value(), twilio.public_url)

    def mount(self, app: web.Application) -> None:
        self.webhook.mount(app)

    def health(self) -> str:
        """``ok``, with the numbers whose 24-hour window has closed (replies held)."""
        return self.outbound.health()

    async def start(self, sink: Sink) -> None:
        """Open the webhook to deliveries (it answers 503 until now)."""
        await self.outbound.forget_old_keys()
        self.intake.sink = sink
        log.info("whatsapp: taking %s webhooks", self.cfg.provider)

    async def send(self, session: str, reply: Reply) -> str | None:
        """Send ``reply`` to the session's number, at most once per key (see ``Outbound``)."""
        number = Session.of(session).address
        return await self.outbound.send(number, reply.text, reply.key or secrets.token_hex(8))

    async def typing(self, session: str, active: bool) -> None:
        return None  # neither API shows a typing indicator for business messages

    async def aclose(self) -> None:
        """Refuse deliveries (503: the platform retries them), finish notes, close HTTP."""
        self.intake.sink = None
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.api.aclose()

    def _track(self, task: asyncio.Task[Any]) -> None:
        self._tasks.add(task)
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and (err := task.exception()) is not None:
            log.error("whatsapp: %s failed: %s", task.get_name(), err)
