"""The Discord transport: ``create(ctx)`` for the daemon, and the Transport it returns.

Start: log in over REST (the token is checked here) → connect the gateway (discord.py; it
reconnects and resumes by itself) → wait for READY → overwrite the application commands
(in each of ``guilds``, or globally) from the command registry. Inbound: messages
(:mod:`transports.discord.wire`) and application commands
(:mod:`transports.discord.interactions`), over the gateway or ``POST /webhooks/discord``.
Outbound: create-message with a nonce from the reply's key (:mod:`transports.discord.send`).

Discord keeps no backlog for a bot: messages sent while musher was down are not delivered
when it reconnects (a RESUME replays only the missed events of a session that is still
alive), so they stay unanswered until the user asks again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from typing import Any

import aiohttp
import discord
import yarl
from aiohttp import web
from discord.gateway import DiscordWebSocket
from discord.http import Route

from bot.messages import InboundMessage, Reply, Session, session_key
from bot.transport import Capabilities, FeedResult, Sink, TransportContext
from config.errors import PermanentError
from config.models import DiscordConfig
from transports.discord.commands import application_commands
from transports.discord.interactions import FollowUp, InteractionReply, Interactions, flush
from transports.discord.send import (
    create_message,
    follow_up,
    interaction_callback,
    nonce,
    send_typing,
)
from transports.discord.verify import verify_key
from transports.discord.webhook import Endpoint
from transports.discord.wire import TRANSPORT, InteractionIn, Me, from_gateway, message_in

log = logging.getLogger("musher.discord")

CONNECT_TIMEOUT_S = 30.0
TYPING_RENEW_S = 8.0  # Discord shows "typing…" for about 10 s
TYPING_S = 10.0  # how long one TYPING_START from a person counts
GUILD_READY_TIMEOUT_S = 1.0
STANDBY = "ok; standby (another daemon holds the gateway)"


def create(ctx: TransportContext) -> DiscordTransport:
    """Factory used by the composition root."""
    return DiscordTransport(ctx, ctx.settings.transports.discord)


def intents() -> discord.Intents:
    """Guilds, guild and direct messages and typing, and message content (privileged:
    enable it in the Developer Portal)."""
    wanted = discord.Intents.none()
    wanted.guilds = wanted.guild_messages = wanted.dm_messages = True
    wanted.guild_typing = wanted.dm_typing = True  # TYPING_START: batches wait (D1)
    wanted.message_content = True
    return wanted


class _Client(discord.Client):
    """discord.py's client, with its events forwarded to the transport."""

    def __init__(self, transport: DiscordTransport) -> None:
        super().__init__(intents=intents(), guild_ready_timeout=GUILD_READY_TIMEOUT_S)
        self.transport = transport

    async def on_ready(self) -> None:
        self.transport.connected("ok")

    async def on_resumed(self) -> None:
        self.transport.connected("ok")

    async def on_disconnect(self) -> None:
        self.transport.connected("disconnected from the gateway")

    async def on_message(self, message: discord.Message) -> None:
        await self.transport.on_message(message)

    async def on_interaction(self, interaction: discord.Interaction[Any]) -> None:
        await self.transport.on_interaction(interaction)

    async def on_raw_typing(self, payload: discord.RawTypingEvent) -> None:
        self.transport.on_typing(payload.channel_id, payload.user_id)


class DiscordTransport:
    name = TRANSPORT
    capabilities = Capabilities(max_length=2000, threads=True, ephemeral=True, typing=True)

    def __init__(self, ctx: TransportContext, cfg: DiscordConfig) -> None:
        if cfg.bot_token is None:
            raise PermanentError("transports.discord: bot_token is required")
        Route.BASE = cfg.api_base_url.rstrip("/")  # discord.py reads it per request
        if cfg.gateway_url:
            DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(cfg.gateway_url)
        self.ctx = ctx
        self.cfg = cfg
        self.identities: tuple[str, ...] = ()
        self.client = _Client(self)
        self.interactions = Interactions(ctx.registry, self._hand_in, cfg.channels)
        self.endpoint = (
            Endpoint(
                verify_key(cfg.public_key),
                ctx.metrics,
                ctx.settings.http.max_body_bytes,
                time.time,
                self._track,
            )
            if cfg.public_key
            else None
        )
        self._state = "starting"
        self._ready = asyncio.Event()
        self._listening = False  # gateway events are taken (see disconnect)
        self._logging_in = asyncio.Lock()
        self._sink: Sink | None = None
        self._prefix = ""
        self._gateway: asyncio.Task[None] | None = None
        self._typing: dict[str, asyncio.Task[None]] = {}
        self._tasks: set[asyncio.Task[Any]] = set()

    def mount(self, app: web.Application) -> None:
        """Add ``POST /webhooks/discord`` when ``public_key`` is set."""
        if self.endpoint is not None:
            self.endpoint.mount(app)

    def health(self) -> str:
        """``ok`` while the gateway is connected, else what is wrong (for ``/readyz``)."""
        return self._state

    def connected(self, state: str) -> None:
        if state != self._state:
            log.info("discord: %s", state)
        self._state = state
        if state == "ok":
            self._ready.set()

    @property
    def account(self) -> str:
        """The bot's user id (known once logged in): one gateway connection per bot."""
        return str(self.client.user.id) if self.client.user is not None else ""

    async def start(self, sink: Sink) -> None:
        """Log in, connect the gateway and sync the application commands.

        Raises :class:`PermanentError` with the reason when Discord refuses the token or
        cannot be reached.
        """
        await self.open(sink)
        await self.connect()

    async def open(self, sink: Sink) -> None:
        """Log in over REST: replies and ``POST /webhooks/discord`` work, the gateway waits
        for :meth:`connect` (on several daemons, the leader's)."""
        self._sink = sink
        self._prefix = await self.ctx.state.get(TRANSPORT, "nonce_prefix") or ""
        if not self._prefix:
            self._prefix = secrets.token_hex(6)
            await self.ctx.state.put(TRANSPORT, "nonce_prefix", self._prefix)
        await self._login()
        self._identify()
        if self.endpoint is not None:
            self.endpoint.interactions = self.interactions
            self.endpoint.follow_up = self._follow_up
        self._state = STANDBY

    async def connect(self) -> None:
        """Connect the gateway, wait for READY and sync the application commands."""
        self._ready.clear()
        await self._rest()  # logged in again after a disconnect
        self._listening = True
        self._gateway = asyncio.create_task(self._connect(), name="discord-gateway")
        await self._wait_ready()
        self._identify()
        await self._sync_commands()
        user = self.client.user
        assert user is not None
        log.info("discord: connected as %s (%s)", user.name, user.id)

    async def disconnect(self) -> None:
        """Stop taking gateway events at once and close the gateway; a fresh client logs in
        over REST when the next reply goes out (:meth:`_rest`)."""
        self._listening = False
        await self._close_gateway()
        self.client = _Client(self)
        self.connected(STANDBY)

    async def _rest(self) -> discord.http.HTTPClient:
        """The REST client, logged in (again, after :meth:`disconnect`) on first use.

        Raises :class:`PermanentError` when Discord refuses the token or cannot be reached.
        """
        if self.client.user is None:
            async with self._logging_in:
                if self.client.user is None:
                    await self._login()
        return self.client.http

    def _identify(self) -> None:
        user = self.client.user
        assert user is not None
        self.identities = tuple(dict.fromkeys((str(user.id), user.name, user.display_name)))

    async def send(self, session: str, reply: Reply) -> str | None:
        """Post ``reply`` to the session's channel or thread, or into its interaction.

        Raises when Discord refused it or stayed unavailable (see ``create_message``).
        """
        if isinstance(reply.reply_to, InteractionReply):
            await reply.reply_to.deliver(reply.text)
            return None
        channel_id = Session.of(session).address
        key = reply.key or secrets.token_hex(8)
        http = await self._rest()
        return await create_message(
            http, channel_id, reply.text, nonce(self._prefix, key), self.ctx.metrics
        )

    async def typing(self, session: str, active: bool) -> None:
        channel_id = Session.of(session).address
        task = self._typing.pop(channel_id, None)
        if task is not None:
            task.cancel()
        if active:
            await send_typing(await self._rest(), channel_id)
            self._typing[channel_id] = asyncio.create_task(
                self._keep_typing(channel_id), name=f"discord-typing-{channel_id}"
            )

    async def aclose(self) -> None:
        """Stop intake, cancel unfinished hand-ins and typing, close the gateway.

        A cancelled hand-in was either journalled (and is replayed on the next start) or
        never reached the journal; Discord does not deliver it again.
        """
        self._sink = None
        if self.endpoint is not None:
            self.endpoint.interactions = None
        for task in [*self._typing.values(), *self._tasks]:
            task.cancel()
        await asyncio.gather(*self._typing.values(), *self._tasks, return_exceptions=True)
        self._typing.clear()
        self._listening = False
        await self._close_gateway()
        self._state = "stopped"

    async def _close_gateway(self) -> None:
        await self.client.close()
        if self._gateway is not None:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(self._gateway, 5)
            self._gateway = None

    async def on_message(self, message: discord.Message) -> None:
        if self._sink is None or not self._listening or self.client.user is None:
            return
        roles: frozenset[int] = frozenset()
        if message.guild is not None and message.guild.self_role is not None:
            roles = frozenset({message.guild.self_role.id})
        me = Me(self.client.user.id, self.identities, roles)
        msg = message_in(message, me, self.cfg.channels)
        if msg is None:
            return
        # Fed in this handler's task, not a new one: the sink has seen the message start
        # arriving before a TYPING_START the gateway sent after it (else that typing would be
        # ended by the message it follows, D1). Tracked so aclose() cancels it as a hand-in.
        if (task := asyncio.current_task()) is not None:
            self._track(task)
        await self._sink.feed(msg)

    def on_typing(self, channel_id: int, user_id: int) -> None:
        """``TYPING_START``: the user types for up to 10 s (Discord sends no "stopped"; their
        message ends it). Channels outside ``channels`` are ignored, as their messages are."""
        if self._sink is None or not self._listening:
            return
        if self.cfg.channels and str(channel_id) not in self.cfg.channels:
            parent = getattr(self.client.get_channel(channel_id), "parent_id", None)
            if str(parent) not in self.cfg.channels:
                return
        self._sink.typing(session_key(TRANSPORT, str(channel_id)), str(user_id), TYPING_S)

    async def on_interaction(self, interaction: discord.Interaction[Any]) -> None:
        it = from_gateway(interaction)
        if it is None or self._sink is None or not self._listening:
            return
        payload, handle = await self.interactions.answer(it, self._follow_up(it))
        try:
            await interaction_callback(self.client.http, it.id, it.token, payload)
        except (discord.HTTPException, aiohttp.ClientError) as err:
            log.error("discord: answering interaction %s failed: %s", it.id, err)
        finally:
            if handle is not None:
                await flush(handle)

    def _follow_up(self, it: InteractionIn) -> FollowUp:
        async def post(text: str, ephemeral: bool) -> None:
            await follow_up(await self._rest(), it.application_id, it.token, text, ephemeral)

        return post

    def _hand_in(self, msg: InboundMessage) -> asyncio.Task[FeedResult]:
        if self._sink is None:
            raise RuntimeError("the Discord transport is not running")
        task = asyncio.create_task(self._sink.feed(msg), name=f"discord-feed-{msg.event_id}")
        self._track(task)
        return task

    def _track(self, task: asyncio.Task[Any]) -> None:
        self._tasks.add(task)
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and (err := task.exception()) is not None:
            log.error("discord: %s failed", task.get_name(), exc_info=err)

    async def _keep_typing(self, channel_id: str) -> None:
        """Renew the typing indicator until cancelled (a turn can outlast one)."""
        while True:
            await asyncio.sleep(TYPING_RENEW_S)
            try:
                await send_typing(await self._rest(), channel_id)
            except (discord.HTTPException, aiohttp.ClientError) as err:
                log.debug("typing in %s failed: %s", channel_id, err)

    async def _login(self) -> None:
        assert self.cfg.bot_token is not None
        try:
            await self.client.login(self.cfg.bot_token.get_secret_value())
        except discord.LoginFailure:
            raise PermanentError(
                "transports.discord: Discord refused bot_token; copy it again from the"
                " Developer Portal (Bot → Reset Token)"
            ) from None
        except (aiohttp.ClientError, OSError, discord.HTTPException) as err:
            raise PermanentError(
                f"transports.discord: cannot reach the Discord API at {Route.BASE}: {err}"
            ) from None

    async def _connect(self) -> None:
        try:
            await self.client.connect(reconnect=True)
        except asyncio.CancelledError:
            raise
        except Exception as err:
            self.connected(f"stopped: {type(err).__name__}: {err}")
            raise

    async def _wait_ready(self) -> None:
        assert self._gateway is not None
        ready = asyncio.create_task(self._ready.wait())
        try:  # a cancelled connect (the lease was lost meanwhile) leaves no waiter behind
            done, _ = await asyncio.wait(
                {ready, self._gateway},
                timeout=CONNECT_TIMEOUT_S,
                return_when=asyncio.FIRST_COMPLETED,
            )
        finally:
            ready.cancel()
        if ready in done:
            return
        reason = self._state
        if self._gateway.done() and not self._gateway.cancelled():
            err = self._gateway.exception()
            reason = f"{type(err).__name__}: {err}" if err else "closed"
            if isinstance(err, discord.PrivilegedIntentsRequired):
                reason = "enable the Message Content intent in the Developer Portal (Bot page)"
        await self.client.close()
        raise PermanentError(f"transports.discord: the gateway did not connect: {reason}")

    async def _sync_commands(self) -> None:
        """Overwrite the application commands in ``guilds`` (or globally); failures are
        logged, since messages still work without them."""
        app_id = self.cfg.application_id or str(self.client.application_id or "")
        payload = application_commands(self.ctx.registry)
        http = self.client.http
        try:
            if self.cfg.guilds:
                for guild in self.cfg.guilds:
                    await http.bulk_upsert_guild_commands(app_id, guild, payload)
            else:
                await http.bulk_upsert_global_commands(app_id, payload)
        except (discord.HTTPException, aiohttp.ClientError) as err:
            log.error(
                "discord: registering %d application commands failed: %s (was the bot invited"
                " with the applications.commands scope? see `musher discord-invite`)",
                len(payload),
                err,
            )
            return
        where = f"guilds {', '.join(self.cfg.guilds)}" if self.cfg.guilds else "globally"
        log.info("discord: %d application commands registered %s", len(payload), where)
