"""The daemon's one HTTP server (aiohttp): health, readiness, metrics, and mounted routes.

Transports mount their own routes (the web console's API, webhooks) before the server
starts. When ``[http] token`` is set every ``/api/`` request needs ``Authorization: Bearer``.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from bot.metrics import Metrics

log = logging.getLogger("musher.http")

ReadyCheck = Callable[[], dict[str, str]]


def error(status: int, message: str) -> web.Response:
    """A JSON error body ``{"error": message}``."""
    return web.json_response({"error": message}, status=status)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def build_app(
    metrics: Metrics, ready: ReadyCheck, token: str | None, max_body_bytes: int
) -> web.Application:
    """The aiohttp application with the daemon's own routes and the token middleware."""
    app = web.Application(middlewares=[_token_middleware(token)], client_max_size=max_body_bytes)

    async def healthz(request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def readyz(request: web.Request) -> web.Response:
        components = ready()
        ok = all(state == "ok" or state.startswith("ok;") for state in components.values())
        return web.json_response(
            {"status": "ok" if ok else "unavailable", "components": components},
            status=200 if ok else 503,
        )

    async def metrics_page(request: web.Request) -> web.Response:
        return web.Response(text=metrics.render(), content_type="text/plain", charset="utf-8")

    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics_page)
    return app


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _token_middleware(token: str | None) -> Any:
    @web.middleware
    async def check_token(request: web.Request, handler: Handler) -> web.StreamResponse:
        if token and request.path.startswith("/api/"):
            given = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
            if not given and request.path.endswith("/events"):
                given = request.query.get("token", "")  # EventSource cannot send headers
            if not hmac.compare_digest(given.encode(), token.encode()):
                return error(401, "missing or wrong bearer token")
        return await handler(request)

    return check_token


async def read_json(request: web.Request, max_bytes: int) -> dict[str, Any] | web.Response:
    """The request's JSON object, or a 400 response saying what is wrong with it."""
    if request.content_length is not None and request.content_length > max_bytes:
        return error(400, f"body too large (limit {max_bytes} bytes)")
    try:
        raw = await request.read()
    except web.HTTPRequestEntityTooLarge:
        return error(400, f"body too large (limit {max_bytes} bytes)")
    try:
        body = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        return error(400, f"malformed JSON: {err}")
    if not isinstance(body, dict):
        return error(400, "the body must be a JSON object")
    return body


class HttpServer:
    """Runs the application on one TCP site; ``port = 0`` picks a free port."""

    def __init__(self, app: web.Application, host: str, port: int) -> None:
        self.app = app
        self.host = host
        self.port = port
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=2.0)

    async def start(self) -> str:
        """Listen; returns the URL."""
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        server = site._server
        assert server is not None
        sockets = getattr(server, "sockets", None) or []
        self.port = sockets[0].getsockname()[1]
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    async def aclose(self) -> None:
        """Stop accepting, give in-flight requests a moment, then close them."""
        await self._runner.cleanup()


async def read_body(request: web.Request, max_bytes: int) -> bytes | web.Response:
    """The raw request body, or a 413 answer when it is larger than ``max_bytes``."""
    too_large = error(413, f"body too large (limit {max_bytes} bytes)")
    if request.content_length is not None and request.content_length > max_bytes:
        return too_large
    try:
        raw = await request.read()
    except web.HTTPRequestEntityTooLarge:
        return too_large
    return too_large if len(raw) > max_bytes else raw
