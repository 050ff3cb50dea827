"""The daemon's one HTTP server (aiohttp): health, readiness, metrics, and mounted routes.

Transports mount their own routes (the web console's API, webhooks) before the server
starts. Who may reach which route is :mod:`bot.http_guard`'s job. Bodies are read with
:func:`read_body` / :func:`read_json`, which never let bad input become a 5xx.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import Callable
from typing import Any

from aiohttp import web

from bot.http_guard import HttpGuard
from bot.metrics import Metrics
from bot.openapi import OPENAPI
from config.models import Settings

log = logging.getLogger("musher.http")

ReadyCheck = Callable[[], dict[str, str]]
READ_TIMEOUT = web.AppKey("musher_read_timeout_s", float)
"""App key: seconds a request body may take to arrive (``[http] read_timeout_s``)."""
MAX_JSON_DEPTH = 32
WEB_ROOM = re.compile(r"[A-Za-z0-9._:-]{1,128}")
"""The web transport's room names (the ``{room}`` of ``/api/v1/rooms/{room}/...``)."""
WEB_ROOM_RULE = "room names are 1-128 characters of A-Z a-z 0-9 . _ : -"


def error(status: int, message: str) -> web.Response:
    """A JSON error body ``{"error": message}``."""
    return web.json_response({"error": message}, status=status)


def build_app(metrics: Metrics, ready: ReadyCheck, settings: Settings) -> web.Application:
    """The aiohttp application with the daemon's own routes and the guard middlewares."""
    app = web.Application(
        middlewares=HttpGuard(settings).middlewares(),
        client_max_size=settings.http.max_body_bytes,
    )
    app[READ_TIMEOUT] = settings.http.read_timeout_s

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
    app.router.add_get("/api/v1/openapi.json", _openapi)
    return app


async def _openapi(request: web.Request) -> web.Response:
    return web.json_response(OPENAPI)


async def read_body(request: web.Request, max_bytes: int) -> bytes | web.Response:
    """The raw body, or a 413 (too large) / 408 (slower than ``[http] read_timeout_s``,
    the connection is then closed) response."""
    if request.content_length is not None and request.content_length > max_bytes:
        return _too_large(max_bytes)
    try:
        if request.content.is_eof():  # the whole body is here already: nothing to wait for
            raw = await request.read()
        else:
            timeout = request.config_dict.get(READ_TIMEOUT, 30.0)
            try:
                async with asyncio.timeout(timeout):
                    raw = await request.read()
            except TimeoutError:
                slow = error(408, f"the body did not arrive within {timeout:g} s")
                slow.force_close()
                return slow
    except web.HTTPRequestEntityTooLarge:
        return _too_large(max_bytes)
    return _too_large(max_bytes) if len(raw) > max_bytes else raw


def _too_large(max_bytes: int) -> web.Response:
    return error(413, f"body too large (limit {max_bytes} bytes)")


async def read_json(request: web.Request, max_bytes: int) -> dict[str, Any] | web.Response:
    """The request's JSON object, or a 4xx response saying what is wrong with it.

    Refused with 400: bodies that are not UTF-8, not JSON, not an object, nested deeper
    than ``MAX_JSON_DEPTH``, using ``NaN``/``Infinity``, or holding lone surrogates.
    """
    raw = await read_body(request, max_bytes)
    if isinstance(raw, web.Response):
        return raw
    try:
        body = parse_json(raw)
    except ValueError as err:
        return error(400, str(err))
    if not isinstance(body, dict):
        return error(400, "the body must be a JSON object")
    return body


def parse_json(raw: bytes) -> Any:
    """Strict JSON: raises ``ValueError`` with a message fit for a 400."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ValueError("the body is not UTF-8") from None
    try:
        value = _DECODER.decode(text)
    except RecursionError:
        raise ValueError(f"JSON nested deeper than {MAX_JSON_DEPTH} levels") from None
    except json.JSONDecodeError as err:
        raise ValueError(f"malformed JSON: {err}") from None
    if _SURROGATE_ESCAPE.search(text) or text.count("{") + text.count("[") > MAX_JSON_DEPTH:
        _check_tree(value)  # else it has no lone surrogate and cannot nest that deep
    return value


def _no_constant(name: str) -> Any:
    raise ValueError(f"malformed JSON: {name} is not a number")


_DECODER = json.JSONDecoder(parse_constant=_no_constant)
"""One decoder for every body (``json.loads`` with an option builds a new one per call)."""


def _check_tree(value: Any) -> None:
    """Depth and strings of a parsed document, iteratively (no recursion to exhaust)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_JSON_DEPTH and isinstance(node, dict | list):
            raise ValueError(f"JSON nested deeper than {MAX_JSON_DEPTH} levels")
        if isinstance(node, dict):
            stack.extend((key, depth) for key in node)
            stack.extend((item, depth + 1) for item in node.values())
        elif isinstance(node, list):
            stack.extend((item, depth + 1) for item in node)
        elif isinstance(node, str) and _SURROGATE.search(node):
            raise ValueError("JSON strings must not hold lone surrogates (\\ud800-\\udfff)")


_SURROGATE = re.compile("[\ud800-\udfff]")
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
"""How a surrogate gets into a decoded body: strict UTF-8 decoding refuses them as bytes."""


class HttpServer:
    """Runs the application on one TCP site; ``port = 0`` picks a free port."""

    def __init__(self, app: web.Application, host: str, port: int) -> None:
        self.app = app
        self.host = host
        self.port = port
        # aiohttp closes a connection whose request head has not fully arrived within
        # keepalive_timeout of its start (or of the last response): the slowloris bound.
        self._runner = web.AppRunner(
            app,
            access_log=None,
            shutdown_timeout=2.0,
            keepalive_timeout=app.get(READ_TIMEOUT, 30.0),
        )

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
