"""A reverse proxy in front of a real homeserver that misbehaves on cue (R11).

Every request is forwarded to ``upstream`` and recorded (arrival time, method, path,
status). Queued faults apply to the next message send (``PUT .../send/...``):
``RateLimit(ms)`` answers 429 ``M_LIMIT_EXCEEDED`` with ``retry_after_ms`` (and
``Retry-After``) without forwarding; ``CommitThen502()`` forwards the send — the homeserver
commits the event — and then answers 502, as a failing gateway would. ``failing_syncs = n``
answers the next ``n`` ``/sync`` requests with 502 (a homeserver restarting).

    async with MatrixProxy(synapse.url) as proxy:
        proxy.faults.append(RateLimit(1500))
        ... homeserver = proxy.url ...
"""

from __future__ import annotations

import math
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

import aiohttp
from aiohttp import web

from tests.fakes.runner import close_runner

_HOP = {"host", "content-length", "transfer-encoding", "connection", "content-encoding"}


@dataclass(frozen=True)
class RateLimit:
    retry_after_ms: int


@dataclass(frozen=True)
class CommitThen502:
    pass


@dataclass(frozen=True)
class Seen:
    at: float  # time.monotonic() on arrival
    method: str
    path: str
    status: int = 0
    window_end: float = 0.0  # for a 429: until when no request should come


class MatrixProxy:
    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.rstrip("/")
        self.faults: deque[RateLimit | CommitThen502] = deque()
        self.seen: list[Seen] = []
        self.failing_syncs = 0
        self.url = ""
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> MatrixProxy:
        app = web.Application(client_max_size=16 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._forward)
        self._runner = web.AppRunner(
            app, handler_cancellation=True, access_log=None, shutdown_timeout=1.0
        )
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self._session = aiohttp.ClientSession(auto_decompress=False)
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._runner is not None:
            await close_runner(self._runner)
        if self._session is not None:
            await self._session.close()

    def sends(self) -> list[Seen]:
        return [s for s in self.seen if s.method == "PUT" and "/send/" in s.path]

    async def _forward(self, request: web.Request) -> web.StreamResponse:
        arrived = time.monotonic()
        path = request.path
        is_send = request.method == "PUT" and "/send/" in path
        fault = self.faults.popleft() if is_send and self.faults else None
        if isinstance(fault, RateLimit):
            wait = fault.retry_after_ms / 1000
            self.seen.append(Seen(arrived, request.method, path, 429, arrived + wait))
            body = {
                "errcode": "M_LIMIT_EXCEEDED",
                "error": "Too Many Requests",
                "retry_after_ms": fault.retry_after_ms,
            }
            headers = {"Retry-After": str(math.ceil(wait))}
            return web.json_response(body, status=429, headers=headers)
        if path.endswith("/sync") and self.failing_syncs > 0:
            self.failing_syncs -= 1
            self.seen.append(Seen(arrived, request.method, path, 502))
            return web.Response(status=502, text="Bad Gateway")
        status, headers, body = await self._upstream(request)
        if isinstance(fault, CommitThen502):
            self.seen.append(Seen(arrived, request.method, path, 502))
            return web.Response(status=502, text="Bad Gateway")
        self.seen.append(Seen(arrived, request.method, path, status))
        return web.Response(status=status, headers=headers, body=body)

    async def _upstream(self, request: web.Request) -> tuple[int, dict[str, Any], bytes]:
        assert self._session is not None
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP}
        async with self._session.request(
            request.method,
            self.upstream + request.rel_url.raw_path_qs,
            headers=headers,
            data=await request.read(),
            allow_redirects=False,
        ) as response:
            body = await response.read()
            out = {k: v for k, v in response.headers.items() if k.lower() not in _HOP}
            return response.status, out, body
