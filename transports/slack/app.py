"""The Slack transport (slack-bolt ``AsyncApp``): Socket Mode or HTTP mode, one workspace.

``start`` asks ``auth.test`` who the bot is (its user id is this transport's identity),
then connects Socket Mode, or opens ``POST /webhooks/slack`` (mounted before the server
started; it answers 503 until now). Inbound: :mod:`transports.slack.events`. Outbound:
``chat.postMessage`` in the session's channel — in its thread for a thread session — via
:class:`~transports.slack.send.Poster`; slash-command replies go into the command's ack or
to its ``response_url``, ephemerally.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Mapping

import aiohttp
from aiohttp import web
from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler
from slack_bolt.async_app import AsyncApp
from slack_bolt.authorization import AuthorizeResult
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.web.async_slack_response import AsyncSlackResponse

from bot.messages import InboundMessage, Reply, Session
from bot.metrics import Metrics
from bot.ratewindow import RateWindow
from bot.transport import Capabilities, FeedResult, Sink, TransportContext
from config.errors import PermanentError
from config.models import SlackConfig
from transports.slack.events import ACK_BUDGET_S, Listeners
from transports.slack.manifest import aliases
from transports.slack.mrkdwn import to_mrkdwn
from transports.slack.send import Poster, respond
from transports.slack.webhook import Webhook
from transports.slack.wire import Bot, CommandReply

log = logging.getLogger("musher.slack")

HTTP_TIMEOUT_S = 10


class SlackTransport:
    name = "slack"
    capabilities = Capabilities(max_length=3000, threads=True, ephemeral=True)  # L3

    def __init__(
        self,
        config: SlackConfig,
        metrics: Metrics,
        max_body_bytes: int,
        command_aliases: Mapping[str, str],
        clock: Callable[[], float] = time.time,
        ack_budget_s: float = ACK_BUDGET_S,
    ) -> None:
        if config.bot_token is None:
            raise PermanentError("transports.slack: bot_token is required")
        secret = config.signing_secret.get_secret_value() if config.signing_secret else ""
        if config.mode == "http" and not secret:
            raise PermanentError(
                "transports.slack: http mode refuses to start without signing_secret"
            )
        if config.mode == "socket" and config.app_token is None:
            raise PermanentError("transports.slack: socket mode needs app_token (xapp-…)")
        self.config = config
        self.metrics = metrics
        self.identities: tuple[str, ...] = ()
        self.bot = Bot("")
        base_url = config.api_base_url.rstrip("/") + "/"
        self.client = AsyncWebClient(
            token=config.bot_token.get_secret_value(),
            base_url=base_url,
            timeout=HTTP_TIMEOUT_S,
            retry_handlers=[],  # retries are ours: a blind retry could post twice
        )
        self.poster = Poster(self.client, metrics)
        self.bolt = AsyncApp(
            client=AsyncWebClient(base_url=base_url, timeout=HTTP_TIMEOUT_S),
            authorize=self._authorizer(),
            process_before_response=True,
            request_verification_enabled=False,  # the webhook verifies before Bolt runs
            logger=logging.getLogger("musher.slack.bolt"),
            name="musher",
        )
        self.listeners = Listeners(
            self._hand_in,
            lambda: self.bot,
            config.channels,
            command_aliases,
            self._follow_up,
            ack_budget_s,
        )
        self.listeners.register(self.bolt, config.command)
        self.webhook = Webhook(secret, metrics, max_body_bytes, clock) if secret else None
        self._auth: AsyncSlackResponse | None = None
        self._sink: Sink | None = None
        self._socket: AsyncSocketModeHandler | None = None
        self._http: aiohttp.ClientSession | None = None
        self._respond_limit = RateWindow()
        self._tasks: set[asyncio.Task[object]] = set()

    def mount(self, app: web.Application) -> None:
        """Add ``POST /webhooks/slack`` (http mode only; Socket Mode needs no route)."""
        if self.config.mode == "http" and self.webhook is not None:
            self.webhook.mount(app)

    @property
    def account(self) -> str:
        """``<team>:<bot user>`` in socket mode (one Socket Mode connection per app), else
        ``""``: http mode has no single connection, every daemon takes webhooks."""
        if self.config.mode != "socket" or self._auth is None:
            return ""
        return f"{self._auth.get('team_id') or ''}:{self.bot.user_id}"

    async def start(self, sink: Sink) -> None:
        """Learn the bot's identity, then take events (Socket Mode connects here).

        Raises :class:`PermanentError` with the reason when Slack refuses the tokens or
        cannot be reached.
        """
        await self.open(sink)
        await self.connect()

    async def open(self, sink: Sink) -> None:
        """Learn the bot's identity and take webhooks (http mode); Socket Mode waits for
        :meth:`connect` (on several daemons, the leader's)."""
        self._auth = await self._auth_test()
        self.bot = Bot(str(self._auth["user_id"]), str(self._auth.get("bot_id") or ""))
        self.identities = (self.bot.user_id,)
        self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=HTTP_TIMEOUT_S))
        self.client.session = self._http  # one pool of kept-alive connections for every call
        self._sink = sink
        if self.config.mode == "http" and self.webhook is not None:
            self.webhook.dispatch = self.bolt.async_dispatch
            self.webhook.on_event = self.listeners.on_event

    async def connect(self) -> None:
        """Open Socket Mode (socket mode; nothing to do in http mode)."""
        if self.config.mode == "socket":
            await self._connect_socket()
        log.info("slack: connected as %s (%s mode)", self.bot.user_id, self.config.mode)

    async def disconnect(self) -> None:
        """Close Socket Mode; replies still go out over the Web API."""
        await self._close_socket()

    async def send(self, session: Session, reply: Reply) -> str | None:
        """Post ``reply`` to the session's channel (its thread for a thread session).

        A slash command's reply goes into its ack while that is still open, else to its
        ``response_url``, ephemerally. Raises when Slack refused or stayed unavailable.
        """
        text = to_mrkdwn(reply.text)
        if isinstance(reply.reply_to, CommandReply):
            if reply.reply_to.offer(text):
                return None
            await respond(self._session(), reply.reply_to.response_url, text, self._respond_limit)
            return None
        session = Session.of(session)
        return await self.poster.post(session.room, text, session.thread, reply.key)

    async def typing(self, session: Session, active: bool) -> None:
        return None

    async def aclose(self) -> None:
        """Stop intake: disconnect Socket Mode, refuse webhooks, cancel unfinished hand-ins.

        A cancelled hand-in is either journalled (and replayed on the next start) or was
        never acknowledged to Slack, which delivers it again.
        """
        self._sink = None
        if self.webhook is not None:
            self.webhook.dispatch = None
            self.webhook.on_event = None
        await self._close_socket()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._http is not None:
            self.client.session = None  # late sends (shutdown notices) open their own
            await self._http.close()
            self._http = None

    async def _close_socket(self) -> None:
        socket, self._socket = self._socket, None
        if socket is not None:
            with contextlib.suppress(Exception):
                await socket.close_async()  # type: ignore[no-untyped-call]

    def _hand_in(self, msg: InboundMessage) -> asyncio.Task[FeedResult]:
        if self._sink is None:
            raise RuntimeError("the Slack transport is not running")
        task = asyncio.create_task(self._sink.feed(msg), name=f"slack-feed-{msg.event_id}")
        self._track(task)
        return task

    def _follow_up(self, url: str, texts: list[str]) -> None:
        async def post_all() -> None:
            for text in texts:
                await respond(self._session(), url, text, self._respond_limit)

        self._track(asyncio.create_task(post_all(), name="slack-follow-up"))

    def _track(self, task: asyncio.Task[object]) -> None:
        self._tasks.add(task)
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[object]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and (err := task.exception()) is not None:
            log.error("slack: %s failed", task.get_name(), exc_info=err)
            if task.get_name() == "slack-follow-up":
                self.metrics.sends_failed.inc(self.name)

    def _session(self) -> aiohttp.ClientSession:
        if self._http is None:
            raise RuntimeError("the Slack transport is not running")
        return self._http

    def _authorizer(self) -> Callable[[], Awaitable[AuthorizeResult]]:
        """Bolt's ``authorize``: the ``auth.test`` answer from ``start``, never a new call."""

        async def authorize() -> AuthorizeResult:
            if self._auth is None:
                raise RuntimeError("the Slack transport has not started")
            return AuthorizeResult.from_auth_test_response(
                auth_test_response=self._auth, bot_token=self.client.token
            )

        return authorize

    async def _auth_test(self) -> AsyncSlackResponse:
        try:
            return await self.client.auth_test()
        except SlackApiError as err:
            reason = err.response.get("error") if isinstance(err.response.data, dict) else None
            raise PermanentError(
                f"transports.slack: Slack refused bot_token ({reason or err.response.status_code});"
                " check it is the app's Bot User OAuth Token (xoxb-…)"
            ) from None
        except (aiohttp.ClientError, TimeoutError) as err:
            raise PermanentError(
                f"transports.slack: cannot reach the Slack API at {self.client.base_url}: {err}"
            ) from None

    async def _connect_socket(self) -> None:
        assert self.config.app_token is not None
        self._socket = AsyncSocketModeHandler(
            self.bolt, app_token=self.config.app_token.get_secret_value()
        )
        try:
            await self._socket.connect_async()  # type: ignore[no-untyped-call]
        except SlackApiError as err:
            reason = err.response.get("error") if isinstance(err.response.data, dict) else None
            raise PermanentError(
                f"transports.slack: Socket Mode refused app_token ({reason});"
                " it must be an app-level token (xapp-…) with connections:write"
            ) from None
        except (aiohttp.ClientError, TimeoutError) as err:
            raise PermanentError(f"transports.slack: cannot open Socket Mode: {err}") from None


def create(ctx: TransportContext) -> SlackTransport:
    """Factory used by the composition root."""
    config = ctx.settings.transports.slack
    return SlackTransport(
        config,
        ctx.metrics,
        ctx.settings.http.max_body_bytes,
        aliases(ctx.registry, config.command),
    )
