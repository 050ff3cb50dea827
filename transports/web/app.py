"""The web transport: the console page, ``/api/v1/rooms/...`` and its SSE stream.

Delivery to the page *is* the room log: the outbox writes every reply there and announces
it on the room feed, which the SSE stream forwards. ``send`` therefore has nothing to do.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from pathlib import Path

from aiohttp import web

from bot.errors import StoreError
from bot.feed import Closed, FeedEvent, Resync, RoomFeed, Typing
from bot.http import error, read_json
from bot.journal import Journal, LogEntry
from bot.messages import InboundMessage, Reply, session_key
from bot.transport import Capabilities, FeedResult, Sink, TransportContext
from transports.web.wire import WireError, check_room, parse_after, parse_post

STATIC = Path(__file__).parent / "static"
KEEPALIVE_S = 15.0
_PAGE = 500


class WebTransport:
    name = "web"
    capabilities = Capabilities(max_length=20_000, typing=True)
    identities: tuple[str, ...] = ()

    def __init__(self, journal: Journal, feed: RoomFeed, max_body_bytes: int) -> None:
        self.journal = journal
        self.feed = feed
        self.max_body_bytes = max_body_bytes
        self._sink: Sink | None = None

    def mount(self, app: web.Application) -> None:
        app.router.add_get("/", self._page)
        app.router.add_static("/static/", STATIC, show_index=False)
        app.router.add_post("/api/v1/rooms/{room}/messages", self._post)
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
        try:
            room = check_room(request.match_info["room"])
            body = await read_json(request, self.max_body_bytes)
            if isinstance(body, web.Response):
                return body
            posted = parse_post(body)
        except WireError as err:
            return error(400, str(err))
        if self._sink is None:
            return error(503, "musher is shutting down")
        event_id = posted.id or uuid.uuid4().hex
        msg = InboundMessage(
            "web", room, posted.sender, event_id, time.time(), posted.text, mentioned=True
        )
        try:
            result = await self._sink.feed(msg)
        except StoreError as err:  # not journalled, so not accepted: the client may retry
            return error(503, f"musher cannot store messages right now: {err}")
        status = 200 if result is FeedResult.DUPLICATE else 202
        return web.json_response({"id": event_id, "status": result.value}, status=status)

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
        response = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
        )
        with self.feed.subscribe(session) as queue:
            await response.prepare(request)
            await response.write(b": subscribed\n\n")
            if after is None:
                after = await self._last_seq(session)
            else:
                after = await self._catch_up(response, session, after)
            if self.feed.typing(session):
                await _write(response, "typing", {"active": True})
            await self._stream(response, session, queue, after)
        return response

    async def _stream(
        self,
        response: web.StreamResponse,
        session: str,
        queue: asyncio.Queue[FeedEvent],
        after: int,
    ) -> None:
        while True:
            try:
                event = await asyncio.wait_for(queue.get(), KEEPALIVE_S)
            except TimeoutError:
                await response.write(b": keepalive\n\n")
                continue
            if isinstance(event, Closed):
                return
            if isinstance(event, Resync):
                after = await self._catch_up(response, session, after)
            elif isinstance(event, Typing):
                await _write(response, "typing", {"active": event.active})
            elif event.seq > after:
                await _write(response, "message", event.to_json(), event.seq)
                after = event.seq

    async def _last_seq(self, session: str) -> int:
        return await self.journal.last_seq(session)

    async def _catch_up(self, response: web.StreamResponse, session: str, after: int) -> int:
        while True:
            entries: list[LogEntry] = await self.journal.history(session, after, _PAGE)
            for entry in entries:
                await _write(response, "message", entry.to_json(), entry.seq)
                after = entry.seq
            if len(entries) < _PAGE:
                return after


async def _write(
    response: web.StreamResponse, event: str, data: object, event_id: int | None = None
) -> None:
    head = f"id: {event_id}\n" if event_id is not None else ""
    payload = f"{head}event: {event}\ndata: {json.dumps(data)}\n\n"
    await response.write(payload.encode())


def create(ctx: TransportContext) -> WebTransport:
    """Factory used by the composition root."""
    return WebTransport(ctx.journal, ctx.feed, ctx.settings.http.max_body_bytes)
