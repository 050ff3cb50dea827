"""A fake Slack: Web API, Socket Mode websocket and ``response_url``s on 127.0.0.1.

It runs its own event loop in a background thread, so synchronous tests (a daemon
subprocess) and async tests can both use it:

    with FakeSlack() as slack:
        ... api_base_url = slack.api_url ...
        slack.fail("chat.postMessage", 429, retry_after=2)     # next call is rate limited
        slack.fail("chat.postMessage", 502, commit=True)       # posts, then answers 502
        slack.push(envelope)                                   # Socket Mode delivery
        slack.wait(lambda: slack.posted)

Web API: ``auth.test`` (checks the bot token), ``chat.postMessage`` (records the message
with its metadata; returns an increasing ``ts``), ``conversations.history`` and
``.replies`` (return recorded messages, metadata only with ``include_all_metadata``),
``apps.connections.open`` (checks the app token; returns ``ws://…/link``); any other method
answers ``{"ok": true}``. Every call is recorded with its arguments and arrival time.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
from collections import defaultdict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import WSMsgType, web

from tests.fakes.runner import close_runner

BOT_TOKEN = "xoxb-fake-bot-token"
APP_TOKEN = "xapp-fake-app-token"


@dataclass(frozen=True)
class Call:
    method: str
    args: dict[str, Any]
    at: float  # time.monotonic() on arrival
    status: int = 200


@dataclass(frozen=True)
class Posted:
    channel: str
    text: str
    ts: str
    thread_ts: str | None
    metadata: dict[str, Any] | None


@dataclass(frozen=True)
class Fault:
    status: int
    retry_after: str | None = None
    commit: bool = False  # perform the call, then answer ``status`` anyway


@dataclass
class _State:
    calls: list[Call] = field(default_factory=list)
    posted: list[Posted] = field(default_factory=list)
    responses: dict[str, list[dict[str, Any]]] = field(default_factory=lambda: defaultdict(list))
    acks: list[dict[str, Any]] = field(default_factory=list)
    faults: dict[str, deque[Fault]] = field(default_factory=lambda: defaultdict(deque))


class FakeSlack:
    def __init__(self, bot_user_id: str = "UBOT", bot_id: str = "BBOT") -> None:
        self.bot_user_id = bot_user_id
        self.bot_id = bot_id
        self.url = ""
        self._state = _State()
        self._lock = threading.Lock()
        self._last_ts = 0.0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="fake-slack")
        self._runner: web.AppRunner | None = None
        self._sockets: set[web.WebSocketResponse] = set()
        self._envelopes: asyncio.Queue[dict[str, Any]] | None = None

    # --- lifecycle ---------------------------------------------------------------------

    def __enter__(self) -> FakeSlack:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)
        return self

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self._stop(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    @property
    def api_url(self) -> str:
        return f"{self.url}/api/"

    def response_url(self, name: str) -> str:
        return f"{self.url}/response/{name}"

    # --- programming and reading -------------------------------------------------------

    def fail(
        self,
        method: str,
        status: int,
        times: int = 1,
        retry_after: float | None = None,
        commit: bool = False,
    ) -> None:
        """The next ``times`` calls of ``method`` (``"response"`` for response URLs) fail."""
        header = None if retry_after is None else f"{retry_after:g}"
        with self._lock:
            self._state.faults[method].extend([Fault(status, header, commit)] * times)

    def push(self, envelope: dict[str, Any]) -> None:
        """Deliver a Socket Mode envelope to the connected client (queued until it is)."""
        assert self._envelopes is not None
        self._loop.call_soon_threadsafe(self._envelopes.put_nowait, envelope)

    @property
    def calls(self) -> list[Call]:
        with self._lock:
            return list(self._state.calls)

    def calls_to(self, method: str) -> list[Call]:
        return [c for c in self.calls if c.method == method]

    @property
    def posted(self) -> list[Posted]:
        with self._lock:
            return list(self._state.posted)

    @property
    def acks(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._state.acks)

    def responses(self, name: str) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._state.responses.get(name, []))

    @property
    def connected(self) -> int:
        return len(self._sockets)

    def wait(self, predicate: Callable[[], object], timeout: float = 15.0) -> bool:
        """Poll ``predicate`` until it is truthy or ``timeout`` passes; returns the outcome."""
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                return False
            time.sleep(0.02)
        return True

    # --- server ------------------------------------------------------------------------

    async def _start(self) -> None:
        self._envelopes = asyncio.Queue()
        app = web.Application()
        app.router.add_route("*", "/api/{method}", self._api)
        app.router.add_get("/link", self._link)
        app.router.add_post("/response/{name}", self._response)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        server = site._server
        assert server is not None
        port = server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}"

    async def _stop(self) -> None:
        for ws in list(self._sockets):
            await ws.close()
        if self._runner is not None:
            await close_runner(self._runner)

    async def _api(self, request: web.Request) -> web.StreamResponse:
        method = request.match_info["method"]
        args: dict[str, Any] = dict(request.query)
        if request.can_read_body:
            if request.content_type == "application/json":
                args.update(await request.json())
            else:
                args.update(await request.post())
        token = request.headers.get("Authorization", "").removeprefix("Bearer ")
        with self._lock:
            faults = self._state.faults.get(method)
            fault = faults.popleft() if faults else None
            status = fault.status if fault else 200
            self._state.calls.append(Call(method, args, time.monotonic(), status))
        if fault is not None and not fault.commit:
            return _failure(fault)
        body = self._answer(method, args, token, request)
        return _failure(fault) if fault is not None else web.json_response(body)

    def _answer(
        self, method: str, args: dict[str, Any], token: str, request: web.Request
    ) -> dict[str, Any]:
        if method == "apps.connections.open":
            if token != APP_TOKEN:
                return {"ok": False, "error": "invalid_auth"}
            return {"ok": True, "url": f"ws://{request.host}/link"}
        if token != BOT_TOKEN:
            return {"ok": False, "error": "invalid_auth"}
        if method == "auth.test":
            return {
                "ok": True,
                "url": "https://fake.slack.com/",
                "team": "Fake",
                "team_id": "T1",
                "user": "musher",
                "user_id": self.bot_user_id,
                "bot_id": self.bot_id,
            }
        if method == "chat.postMessage":
            return self._post(args)
        if method in ("conversations.history", "conversations.replies"):
            return self._history(method, args)
        return {"ok": True}

    def _post(self, args: dict[str, Any]) -> dict[str, Any]:
        channel, text = args.get("channel"), args.get("text")
        if not channel or not isinstance(text, str):
            return {"ok": False, "error": "channel_not_found" if not channel else "no_text"}
        with self._lock:
            self._last_ts = max(self._last_ts + 0.000001, time.time())
            ts = f"{self._last_ts:.6f}"
        metadata = args.get("metadata")
        if isinstance(metadata, str):
            metadata = json.loads(metadata)
        posted = Posted(channel, text, ts, args.get("thread_ts"), metadata)
        with self._lock:
            self._state.posted.append(posted)
        return {"ok": True, "channel": channel, "ts": ts, "message": {"text": text, "ts": ts}}

    def _history(self, method: str, args: dict[str, Any]) -> dict[str, Any]:
        oldest = float(args.get("oldest") or 0)
        with_meta = str(args.get("include_all_metadata", "")).lower() in ("1", "true")
        found = []
        for p in reversed(self.posted):
            if p.channel != args.get("channel") or float(p.ts) < oldest:
                continue
            if method == "conversations.history" and p.thread_ts is not None:
                continue  # thread replies are not in the channel's history
            if method == "conversations.replies" and args.get("ts") not in (p.ts, p.thread_ts):
                continue
            message: dict[str, Any] = {"type": "message", "text": p.text, "ts": p.ts}
            if with_meta and p.metadata:
                message["metadata"] = p.metadata
            found.append(message)
        return {"ok": True, "messages": found, "has_more": False}

    async def _response(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        body = await request.json()
        with self._lock:
            faults = self._state.faults.get("response")
            fault = faults.popleft() if faults else None
            self._state.calls.append(Call("response", body, time.monotonic(), 200))
            if fault is None or fault.commit:
                self._state.responses[name].append(body)
        return _failure(fault) if fault is not None else web.Response(text="ok")

    async def _link(self, request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        self._sockets.add(ws)
        await ws.send_json({"type": "hello", "num_connections": 1, "debug_info": {}})
        forward = asyncio.create_task(self._forward(ws))
        try:
            async for msg in ws:
                if msg.type == WSMsgType.TEXT:
                    with self._lock:
                        self._state.acks.append(json.loads(msg.data))
        finally:
            forward.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await forward
            self._sockets.discard(ws)
        return ws

    async def _forward(self, ws: web.WebSocketResponse) -> None:
        assert self._envelopes is not None
        while True:
            envelope = await self._envelopes.get()
            await ws.send_json(envelope)


def _failure(fault: Fault) -> web.Response:
    headers = {"Retry-After": fault.retry_after} if fault.retry_after else {}
    if fault.status == 429:
        body = {"ok": False, "error": "ratelimited"}
        return web.json_response(body, status=429, headers=headers)
    return web.Response(
        status=fault.status,
        text="<html>Bad Gateway</html>",
        headers=headers,
        content_type="text/html",
    )
