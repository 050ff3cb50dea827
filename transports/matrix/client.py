"""The Matrix transport: ``create(ctx)`` for the daemon, and the Transport it returns.

Start: log in (saved session, token or password) → learn the display name → resolve and
join the configured rooms → run the sync loop in the background. Replies go out as
``m.notice`` with HTML, under a transaction id derived from the reply's key; typing
notifications are renewed while a turn runs. With ``encryption = true`` nio encrypts and
decrypts (see :mod:`transports.matrix.e2ee`); a message it cannot decrypt is logged and
the room told, at most once an hour.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
import uuid
from typing import Any

import aiohttp
from nio import (
    AsyncClient,
    AsyncClientConfig,
    ErrorResponse,
    MegolmEvent,
    ProfileGetDisplayNameResponse,
)

from bot.messages import Reply, Session
from bot.ratewindow import RateWindow
from bot.transport import Capabilities, Sink, TransportContext
from config.errors import PermanentError
from config.models import MatrixConfig
from transports.matrix import e2ee
from transports.matrix.login import Login
from transports.matrix.rooms import Rooms
from transports.matrix.send import notice, send_event, transaction_id, watch_rate_limits
from transports.matrix.sync import NAME, SyncLoop

log = logging.getLogger("musher.matrix")
logging.getLogger("nio").setLevel(logging.WARNING)  # nio logs every event at INFO

TYPING_MS = 30_000
STOP_GRACE_S = 3.0
ENCRYPTED = (
    "🔒 This room is end-to-end encrypted and musher's encryption support is off, so I "
    "cannot read the messages here. Use an unencrypted room or a direct chat without "
    "encryption, or ask the operator to enable encryption for musher's Matrix transport."
)
UNREADABLE = (
    "🔒 I could not decrypt a message in this room: its keys have not reached me (yet). "
    "If it was for me, please send it again; if this keeps happening, your client may not "
    "share keys with unverified devices — allow that for this room."
)
UNREADABLE_EVERY_S = 3600


def create(ctx: TransportContext) -> MatrixTransport:
    cfg = ctx.settings.transports.matrix
    if cfg.encryption:
        e2ee.require()
    return MatrixTransport(ctx, cfg)


class MatrixTransport:
    name = NAME
    capabilities = Capabilities(max_length=16_000, typing=True)

    def __init__(self, ctx: TransportContext, cfg: MatrixConfig) -> None:
        self.ctx = ctx
        self.cfg = cfg
        self.identities: tuple[str, ...] = (cfg.user_id or "",)
        self.display_name: str | None = None
        store = str(e2ee.store_path(ctx.data_dir)) if cfg.encryption else ""
        self.client = AsyncClient(
            cfg.homeserver or "",
            cfg.user_id or "",
            store_path=store,
            config=AsyncClientConfig(
                encryption_enabled=cfg.encryption,
                store_sync_tokens=False,  # the token is musher's, stored after the journal
                max_timeouts=0,  # network errors come back to us: the loops below retry
                max_limit_exceeded=3,
                request_timeout=30,
            ),
        )
        self.window = RateWindow()
        self.client.add_response_callback(watch_rate_limits(self.window), ErrorResponse)
        self.login = Login(self.client, cfg, ctx.data_dir / "matrix" / "session.json")
        self.rooms = Rooms(self.client, cfg)
        self.keys = e2ee.Keys(self.client) if cfg.encryption else None
        undecryptable = self._unreadable if cfg.encryption else self._encrypted
        self.sync = SyncLoop(
            self.client,
            ctx,
            self.rooms,
            self.login,
            lambda: self.display_name,
            undecryptable,
            self.keys,
        )
        self._prefix = ""
        self._sink: Sink | None = None
        self._unreadable_told: dict[str, float] = {}
        self._task: asyncio.Task[None] | None = None
        self._typing: dict[str, asyncio.Task[None]] = {}

    @property
    def account(self) -> str:
        """The bot's Matrix user id: one sync loop per account."""
        return self.identities[0] if self.identities else ""

    async def start(self, sink: Sink) -> None:
        await self.open(sink)
        await self.connect()

    async def open(self, sink: Sink) -> None:
        """Log in, resolve and join the rooms: ready to send; syncing waits for
        :meth:`connect` (on several daemons, the leader's)."""
        self._sink = sink
        try:
            session = await self.login.start()
            resp = await self.client.get_displayname(session.user_id)
            if isinstance(resp, ProfileGetDisplayNameResponse) and resp.displayname:
                self.display_name = resp.displayname
            self.identities = tuple(n for n in (session.user_id, self.display_name) if n)
            if self.keys is not None:
                await self.keys.maintain()  # a new device uploads its keys here
            await self.rooms.resolve()
            await self.rooms.join_configured()
        except (aiohttp.ClientError, TimeoutError, OSError) as err:
            raise PermanentError(f"matrix: cannot reach {self.cfg.homeserver}: {err}") from err
        self._prefix = await self.ctx.state.get(NAME, "txn_prefix") or ""
        if not self._prefix:
            self._prefix = secrets.token_hex(6)
            await self.ctx.state.put(NAME, "txn_prefix", self._prefix)
        encrypting = f", encryption on, device {session.device_id}" if self.keys else ""
        log.info("logged in as %s (%s)%s", session.user_id, self.display_name, encrypting)

    async def connect(self) -> None:
        """Sync from the position stored in the database (``next_batch``)."""
        assert self._sink is not None, "open() first"
        self._task = asyncio.create_task(self.sync.run(self._sink), name="matrix-sync")
        self._task.add_done_callback(_report)
        log.info("syncing as %s", self.account)

    async def disconnect(self) -> None:
        """Stop syncing (a batch being fed gets a moment to finish); sending goes on."""
        if self._task is not None:
            if not self.sync.idle.is_set():  # a batch is being fed: let it finish
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.sync.idle.wait(), STOP_GRACE_S)
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
            self._task = None

    async def send(self, session: Session, reply: Reply) -> str | None:
        room_id = Session.of(session).address
        tx_id = transaction_id(self._prefix, reply.key or uuid.uuid4().hex)
        return await self._send(room_id, notice(reply.text), tx_id)

    async def _send(self, room_id: str, content: dict[str, Any], tx_id: str) -> str:
        if self.keys is not None:
            await self.keys.before_send(room_id)
        metrics, renew = self.ctx.metrics, self.login.renew
        return await send_event(self.client, room_id, content, tx_id, metrics, renew, self.window)

    async def typing(self, session: Session, active: bool) -> None:
        room_id = Session.of(session).address
        task = self._typing.pop(room_id, None)
        if task is not None:
            task.cancel()
        await self.window.wait()
        await self.client.room_typing(room_id, active, timeout=TYPING_MS)
        if active:
            self._typing[room_id] = asyncio.create_task(self._keep_typing(room_id))

    async def _keep_typing(self, room_id: str) -> None:
        """Renew the typing notification until cancelled (a turn can outlast one)."""
        while True:
            await asyncio.sleep(TYPING_MS / 1000 - 5)
            await self.window.wait()
            try:
                await self.client.room_typing(room_id, True, timeout=TYPING_MS)
            except (aiohttp.ClientError, TimeoutError, OSError) as err:
                log.debug("typing in %s failed: %s", room_id, err)

    async def _encrypted(self, room_id: str, event: MegolmEvent) -> None:
        """Tell an encrypted room once, ever, that musher cannot read it."""
        key = f"encrypted_warned:{room_id}"
        if await self.ctx.state.get(NAME, key):
            return
        log.warning("%s is encrypted and encryption is off; telling the room", room_id)
        tx_id = transaction_id(self._prefix, key)
        try:
            await self._send(room_id, notice(ENCRYPTED), tx_id)
        except Exception:
            log.exception("could not tell %s that it is encrypted", room_id)
            return
        await self.ctx.state.put(NAME, key, "1")

    async def _unreadable(self, room_id: str, event: MegolmEvent) -> None:
        """Encryption is on but ``event`` could not be decrypted: log it, and tell the room
        at most once an hour (the transaction id is per hour, so a batch delivered again
        after a restart is not told twice)."""
        log.warning(
            "could not decrypt %s from %s in %s (session %s, device %s)",
            event.event_id,
            event.sender,
            room_id,
            event.session_id,
            event.device_id,
        )
        now = time.time()
        if now - self._unreadable_told.get(room_id, 0.0) < UNREADABLE_EVERY_S:
            return
        self._unreadable_told[room_id] = now
        hour = int(now // UNREADABLE_EVERY_S)
        tx_id = transaction_id(self._prefix, f"unreadable:{room_id}:{hour}")
        try:
            await self._send(room_id, notice(UNREADABLE), tx_id)
        except Exception:
            log.exception("could not tell %s that a message was unreadable", room_id)

    async def aclose(self) -> None:
        """Stop syncing (a batch being fed gets a moment to finish) and close the client."""
        for task in self._typing.values():
            task.cancel()
        self._typing.clear()
        await self.disconnect()
        await self.client.close()


def _report(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("the sync loop stopped", exc_info=task.exception())
