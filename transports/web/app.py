"""The web transport: the console page, ``/api/v1/rooms/...`` and its SSE stream.

Delivery to the page *is* the room log: the outbox writes every reply there and announces
it on the room feed, which the SSE stream forwards. ``send`` therefore has nothing to do.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path

from aiohttp import web

from bot.feed import Closed, FeedEvent, Resync, RoomFeed, Typing
from bot.http import error, read_json
from bot.http_guard import identity_of
from bot.journal import Journal, LogEntry
from bot.messages import InboundMessage, Reply, session_key
from bot.sse import EventStreams, SseWriter
from bot.transport import Capabilities, FeedResult, Sink, TransportContext
from config.errors import StoreError
from transports.web.wire import WireError, check_room, parse_after, parse_post, parse_typing

STATIC = Path(__file__).parent / "static"
KEEPALIVE_S = 15.0
TYPING_S = 6.0
"""How long one typing signal from the page counts; the page repeats it every few seconds
while the person types and says ``false`` when they send or clear the box."""
_PAGE = 500


class WebTransport:
    name = "web"
    capabilities = Capabilities(max_length=20_000, typing=True)
    identities: tuple[str, ...] = ()

    def __init__(
        self, journal: Journal, feed: RoomFeed, max_body_bytes: int, max_streams: int = 32
    ) -> None:
        self.journal = journal
        self.feed = feed
        self.max_body_bytes = max_body_bytes
        self.streams = EventStreams(max_streams)
        self._sink: Sink | None = None

    def mount(self, app: web.Application) -> None:
        app.router.add_get("/", self._page)
        app.router.add_static("/static/", STATIC, show_index=False)
        app.router.add_post("/api/v1/rooms/{room}/messages", self._post)
        app.router.add_post("/api/v1/rooms/{room}/typing", self._typing)
        app.router.add_get("/api/v1/rooms/{room}/messages", self._history)
        app.router.add_get("/api/v1/rooms/{room}/events", self._events)

    async def start(self, sink: Sink) -> None:
        self._sink = sink

    async def send(self, session: str, reply: Reply) -> str | None:
        return None

    async def typing(self, session: str, active: bool) -> None:
        return None

    async def aclose(self) -> None:
        self._sink = None
        self.feed.close()

    async def _page(self, request: web.Request) -> web.StreamResponse:
        return web.FileResponse(STATIC / "index.html")

    async def _post(self, request: web.Request) -> web.Response:
        """Journal a message. With web users the token names the sender and the body's
        ``sender`` is ignored; without, ``sender`` is a display name that grants nothing
        (the console is one operator)."""
        user = identity_of(request).user
        try:
            room = check_room(request.match_info["room"])
            body = await read_json(request, self.max_body_bytes)
            if isinstance(body, web.Response):
                return body
            posted = parse_post(body, sender_required=user is None)
        except WireError as err:
            return error(400, str(err))
        if self._sink is None:
            return error(503, "musher is shutting down")
        event_id = posted.id or uuid.uuid4().hex
        sender = user or posted.sender
        msg = InboundMessage(
            "web", room, sender, event_id, time.time(), posted.text, mentioned=True
        )
        try:
            result = await self._sink.feed(msg)
        except StoreError as err:  # not journalled, so not accepted: the client may retry
            return error(503, f"musher cannot store messages right now: {err}")
        status = 200 if result is FeedResult.DUPLICATE else 202
        return web.json_response(
            {"id": event_id, "status": result.value, "sender": sender}, status=status
        )

    async def _typing(self, request: web.Request) -> web.Response:
        """The page's person is typing (or stopped): the room's batch waits for them (D1).
        The sender is the token's user with web users, else the body's display name."""
        user = identity_of(request).user
        try:
            room = check_room(request.match_info["room"])
            body = await read_json(request, self.max_body_bytes)
            if isinstance(body, web.Response):
                return body
            posted = parse_typing(body, sender_required=user is None)
        except WireError as err:
            return error(400, str(err))
        if self._sink is None:
            return error(503, "musher is shutting down")
        seconds = TYPING_S if posted.typing else 0.0
        self._sink.typing(session_key("web", room), user or posted.sender, seconds)
        return web.json_response({"status": "ok"}, status=202)

    async def _history(self, request: web.Request) -> web.Response:
        try:
            room = check_room(request.match_info["room"])
            after = parse_after(request.query.get("after"))
        except WireError as err:
            return error(400, str(err))
        entries = await self.journal.history(session_key("web", room), after)
        return web.json_response(
            {
                "messages": [e.to_json() for e in entries],
                "next": entries[-1].seq if entries else after,
            }
        )

    async def _events(self, request: web.Request) -> web.StreamResponse:
        """SSE: room log lines after ``after`` (or ``Last-Event-ID``), then live events.

        Without ``after`` the stream is live only. It opens with a comment line once the
        subscription is in place, so a client may post right after reading it.
        """
        try:
            room = check_room(request.match_info["room"])
            start = request.headers.get("Last-Event-ID") or request.query.get("after")
            after = parse_after(start) if start else None
        except WireError as err:
            return error(400, str(err))
        session = session_key("web", room)

        async def body(stream: SseWriter) -> None:
            with self.feed.subscribe(session) as queue:
                await stream.comment("subscribed")
                if after is None:
                    start = await self._last_seq(session)
                else:
                    start = await self._catch_up(stream, session, after)
                if self.feed.typing(session):
                    await stream.send("typing", {"active": True})
                await self._stream(stream, session, queue, start)

        return await self.streams.serve(request, f"room {room}", body)

    async def _stream(
        self, stream: SseWriter, session: str, queue: asyncio.Queue[FeedEvent], after: int
    ) -> None:
        while True:
            try:
                event = await asyncio.wait_for(queue.get(), KEEPALIVE_S)
            except TimeoutError:
                await stream.comment("keepalive")
                continue
            if isinstance(event, Closed):
                return
            if isinstance(event, Resync):
                after = await self._catch_up(stream, session, after)
            elif isinstance(event, Typing):
                await stream.send("typing", {"active": event.active})
            elif event.seq > after:
                await stream.send("message", event.to_json(), event.seq)
                after = event.seq

    async def _last_seq(self, session: str) -> int:
        return await self.journal.last_seq(session)

    async def _catch_up(self, stream: SseWriter, session: str, after: int) -> int:
        while True:
            entries: list[LogEntry] = await self.journal.history(session, after, _PAGE)
            for entry in entries:
                await stream.send("message", entry.to_json(), entry.seq)
                after = entry.seq
            if len(entries) < _PAGE:
                return after


def create(ctx: TransportContext) -> WebTransport:
    """Factory used by the composition root."""
    http = ctx.settings.http
    return WebTransport(ctx.journal, ctx.feed, http.max_body_bytes, http.max_streams_per_room)
