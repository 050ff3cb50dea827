"""The sync loop: long-poll ``/sync``, feed each batch's messages to ingress, then advance.

``next_batch`` is written to the database only after every message of the batch has been
fed (journalled) — the token is never ahead of the journal (R10). A crash in between
means the batch is delivered again, and ingress drops what it already has. The first
start (no token) answers nothing older than the start; a restart resumes from the token
with ``full_state`` so room members and names are known again. With encryption on, nio
decrypts a batch inside ``sync`` (what it cannot decrypt stays a ``MegolmEvent``), and the
keys are looked after once the batch is done.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
from nio import (
    AsyncClient,
    InviteMemberEvent,
    JoinResponse,
    MegolmEvent,
    MessageDirection,
    RoomMemberEvent,
    RoomMessagesResponse,
    SyncResponse,
    TypingNoticeEvent,
)
from nio.responses import InviteInfo, RoomInfo

from bot.messages import session_key
from bot.transport import Sink, TransportContext
from transports.matrix.e2ee import Keys
from transports.matrix.login import UNKNOWN_TOKEN, Login, describe
from transports.matrix.rooms import Rooms
from transports.matrix.wire import TRANSPORT, inbound_message

log = logging.getLogger("musher.matrix")

NAME = TRANSPORT

TOKEN_KEY = "next_batch"
LONG_POLL_MS = 30_000
TIMELINE_LIMIT = 100
BACKFILL_PAGES = 10
MAX_BACKOFF_S = 60.0
FILTER = {"room": {"timeline": {"limit": TIMELINE_LIMIT}}}
TYPING_S = 30.0
"""How long a ``m.typing`` listing counts (Element's own timeout); the server's next listing
without the user ends it sooner."""


class SyncLoop:
    """Owns ``/sync``; :attr:`idle` is set while waiting on the server (safe to cancel)."""

    def __init__(
        self,
        client: AsyncClient,
        ctx: TransportContext,
        rooms: Rooms,
        login: Login,
        display_name: Callable[[], str | None],
        on_encrypted: Callable[[str, MegolmEvent], Awaitable[None]],
        keys: Keys | None = None,
    ) -> None:
        self.client = client
        self.ctx = ctx
        self.rooms = rooms
        self.login = login
        self.display_name = display_name
        self.on_encrypted = on_encrypted
        self.keys = keys
        self.started_ms = int(time.time() * 1000)
        self.idle = asyncio.Event()
        self.typing: dict[str, frozenset[str]] = {}  # room id -> who the last m.typing listed

    async def run(self, sink: Sink) -> None:
        token = await self.ctx.state.get(NAME, TOKEN_KEY)
        first, backoff = True, 1.0
        while True:
            self.idle.set()  # waiting on the server or backing off: safe to cancel
            try:
                resp = await self.client.sync(
                    timeout=0 if first else LONG_POLL_MS,
                    since=token,
                    full_state=first,
                    sync_filter=FILTER,
                )
            except (aiohttp.ClientError, TimeoutError, OSError) as err:
                problem = str(err) or type(err).__name__
                log.warning("sync failed (%s); retrying in %.0f s", problem, backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF_S)
                continue
            if not isinstance(resp, SyncResponse):
                if resp.status_code == UNKNOWN_TOKEN and await self._renew():
                    continue
                log.warning("sync refused: %s; retrying in %.0f s", describe(resp), backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF_S)
                continue
            self.idle.clear()  # feeding a batch: shutdown lets it finish
            try:
                await self._handle(resp, sink, token)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("handling a sync batch failed; it will be delivered again")
                self.idle.set()
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF_S)
                continue
            await self.ctx.state.put(NAME, TOKEN_KEY, resp.next_batch)
            token, first, backoff = resp.next_batch, False, 1.0
            if self.keys is not None:
                await self.keys.maintain()

    async def _renew(self) -> bool:
        try:
            return await self.login.renew()
        except Exception:
            log.exception("logging in again failed")
            return False

    async def _handle(self, resp: SyncResponse, sink: Sink, since: str | None) -> None:
        for room_id, invite in resp.rooms.invite.items():
            await self._invite(room_id, invite)
        cutoff = self.started_ms if since is None else 0
        for room_id, info in resp.rooms.join.items():
            if not self.rooms.serves(room_id):
                continue
            for event in await self._events(room_id, info, since):
                if getattr(event, "server_timestamp", 0) < cutoff:
                    continue  # history from before the first start
                await self._event(room_id, event, sink)
            for ephemeral in info.ephemeral:  # after the messages: typing is the newer state
                if isinstance(ephemeral, TypingNoticeEvent):
                    self._typing(room_id, frozenset(ephemeral.users), sink)

    def _typing(self, room_id: str, users: frozenset[str], sink: Sink) -> None:
        """Report who types now (each listing extends them) and who stopped (D1)."""
        before = self.typing.pop(room_id, frozenset())
        log.debug("typing in %s: %s", room_id, ", ".join(sorted(users)) or "nobody")
        if users:
            self.typing[room_id] = users
        session = session_key(TRANSPORT, room_id)
        for user in users:
            sink.typing(session, user, TYPING_S)
        for user in before - users:
            sink.typing(session, user, 0.0)

    async def _invite(self, room_id: str, invite: InviteInfo) -> None:
        me = self.client.user_id
        for ev in invite.invite_state:
            if isinstance(ev, InviteMemberEvent) and ev.state_key == me:
                if ev.membership != "invite":
                    continue
                direct = bool(ev.content.get("is_direct"))
                if await self.rooms.accepts_invite(room_id, ev.sender, direct):
                    resp = await self.client.join(room_id)
                    if isinstance(resp, JoinResponse):
                        log.info("accepted the invite of %s to %s", ev.sender, room_id)
                    else:
                        why = describe(resp)
                        log.error("joining %s (invited by %s) failed: %s", room_id, ev.sender, why)
                else:
                    await self.client.room_leave(room_id)
                    log.info("declined the invite of %s to %s", ev.sender, room_id)
                return

    async def _events(self, room_id: str, info: RoomInfo, since: str | None) -> list[Any]:
        """The room's new events, oldest first; only those after the bot's invite or join
        when it joined in this batch, plus what a ``limited`` timeline left out."""
        events = list(info.timeline.events)
        me = self.client.user_id
        mine = [
            i
            for i, ev in enumerate(events)
            if isinstance(ev, RoomMemberEvent) and ev.state_key == me
        ]
        joins = [i for i in mine if events[i].membership == "join"]
        if joins and events[joins[-1]].prev_membership != "join":
            invites = [i for i in mine if i < joins[-1] and events[i].membership == "invite"]
            return events[(invites[-1] if invites else joins[-1]) + 1 :]
        if info.timeline.limited and since and info.timeline.prev_batch:
            events = await self._backfill(room_id, info.timeline.prev_batch, since) + events
        return events

    async def _backfill(self, room_id: str, start: str, since: str) -> list[Any]:
        older: list[Any] = []
        for _ in range(BACKFILL_PAGES):
            resp = await self.client.room_messages(
                room_id, start=start, end=since, direction=MessageDirection.back, limit=100
            )
            if not isinstance(resp, RoomMessagesResponse):
                log.warning("fetching missed messages in %s failed: %s", room_id, describe(resp))
                break
            older.extend(resp.chunk)
            if not resp.chunk or not resp.end or resp.end == start:
                break
            start = resp.end
        log.info("fetched %d earlier events in %s", len(older), room_id)
        return older[::-1]

    async def _event(self, room_id: str, event: Any, sink: Sink) -> None:
        me = self.client.user_id
        if getattr(event, "sender", me) == me:
            return
        if isinstance(event, MegolmEvent):
            await self.on_encrypted(room_id, event)  # not decrypted: no key, or encryption off
            return
        direct = self.rooms.is_direct(self.client.rooms.get(room_id))
        msg = inbound_message(room_id, event, me, self.display_name(), direct)
        if msg is None:
            return  # notices (bots), emotes, media, state, redactions, edits
        await sink.feed(msg)
