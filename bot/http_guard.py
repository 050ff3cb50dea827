"""Who may reach the daemon's HTTP server: the Host it serves, same-origin JSON, bearer identity.

One middleware, three checks in this order (each refusal is a JSON ``{"error"}``):

1. **Host** (every route): the ``Host`` header must name the daemon: a loopback name, the
   bound address, the address the client connected to, or ``[http] public_hosts``;
   anything else is 421 (a DNS-rebinding page cannot read or post).
2. **Same origin** (state-changing requests under ``/api/`` and ``/mcp/``): the body must
   be ``Content-Type: application/json`` (415 otherwise; a cross-site ``<form>`` or
   ``no-cors`` fetch cannot send it) and an ``Origin`` header, when sent, must be the
   daemon's own (the ``Host`` it was reached at) or one of ``[http] allowed_origins``
   (403). Webhooks (``/webhooks/``) are exempt: the platform signs them.
3. **Identity** (``/api/``): with ``[http] token`` or ``[transports.web] users`` set, a
   request needs ``Authorization: Bearer <token>`` (SSE streams may pass ``?token=``);
   the token decides who the request is (:class:`Identity`). Without either, every
   request is the local operator.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from config.base import is_loopback
from config.models import Settings

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_GUARDED_POSTS = ("/api/", "/mcp/")
_HASHED = "sha256:"


@dataclass(frozen=True, slots=True)
class Identity:
    """Who a request is. ``user`` is a ``[transports.web] users`` name, or ``None`` for
    the local operator (no users configured) or the shared ``[http] token``, which may
    only read once users exist (``can_post`` is then False)."""

    user: str | None = None
    can_post: bool = True


OPERATOR = Identity()
IDENTITY = web.RequestKey("musher_identity", Identity)
"""Request key of the caller's :class:`Identity` (set on every ``/api/`` request)."""


def _json_error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


class Credentials:
    """The bearer tokens ``/api/`` accepts and whom each one names."""

    def __init__(self, token: str | None, users: Mapping[str, str]) -> None:
        self.token = token
        self.users = dict(users)

    @classmethod
    def from_settings(cls, settings: Settings) -> Credentials:
        token = settings.http.token
        users = settings.transports.web.users
        return cls(
            token.get_secret_value() if token else None,
            {name: secret.get_secret_value() for name, secret in users.items()},
        )

    @property
    def required(self) -> bool:
        return self.token is not None or bool(self.users)

    def identify(self, given: str) -> Identity | None:
        """The identity ``given`` authenticates, or ``None``. Compares in constant time."""
        if not given.strip():
            return None
        digest = hashlib.sha256(given.encode()).hexdigest()
        for name, secret in self.users.items():
            expected, offered = (
                (secret[len(_HASHED) :].lower(), digest)
                if secret.startswith(_HASHED)
                else (secret, given)
            )
            if hmac.compare_digest(expected.encode(), offered.encode()):
                return Identity(name)
        if self.token is not None and hmac.compare_digest(self.token.encode(), given.encode()):
            return Identity(None, can_post=not self.users)
        return None


def bearer(request: web.Request) -> str | None:
    """The token of ``Authorization: Bearer <token>``; ``""`` when there is no such header,
    ``None`` when the header uses another scheme (or none): such a request is refused."""
    header = request.headers.get("Authorization")
    if header is None:
        return ""
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def host_name(header: str) -> str | None:
    """The host part of a ``Host`` header, lower-cased, without port or brackets; ``None``
    when it is malformed."""
    header = header.strip().lower()
    if header.startswith("["):
        name, sep, rest = header[1:].partition("]")
        if not sep or (rest and not _is_port(rest)):
            return None
        return name
    name, _, port = header.partition(":")
    if not name or (port and not _is_port(":" + port)):
        return None
    return name.rstrip(".")


def _is_port(text: str) -> bool:
    return text.startswith(":") and text[1:].isascii() and text[1:].isdigit() and len(text) < 7


class HttpGuard:
    """The guard's middleware, configured once from the settings."""

    def __init__(self, settings: Settings) -> None:
        http = settings.http
        self.hosts = frozenset({http.host.strip("[]").lower(), *http.public_hosts})
        self.origins = frozenset(http.allowed_origins)
        self.credentials = Credentials.from_settings(settings)

    def middlewares(self) -> list[Any]:
        """One middleware running the three checks in order (one handler call per request)."""
        return [self._guard]

    @web.middleware
    async def _guard(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        refused = self.refusal(request)
        return refused if refused is not None else await handler(request)

    def refusal(self, request: web.Request) -> web.Response | None:
        """The answer to a request the guard refuses (None: let it through); sets the
        request's :class:`Identity` on ``/api/``."""
        if not self.serves(request):
            return _json_error(
                421, "this server does not serve that Host (see [http] public_hosts)"
            )
        path = request.path
        if request.method not in _SAFE_METHODS and path.startswith(_GUARDED_POSTS):
            refused = self._same_origin(request)
            if refused is not None:
                return refused
        return self._identity(request) if path.startswith("/api/") else None

    def serves(self, request: web.Request) -> bool:
        """Whether the request's ``Host`` names this daemon (see the module docstring)."""
        header = request.headers.get("Host")
        if header is None:
            return True  # HTTP/1.0 without Host: no browser sends that
        name = host_name(header)
        if name is None:
            return False
        if name in self.hosts or is_loopback(name):
            return True
        sockname = request.transport.get_extra_info("sockname") if request.transport else None
        return isinstance(sockname, tuple) and name == str(sockname[0]).lower()

    def _same_origin(self, request: web.Request) -> web.Response | None:
        if request.content_type != "application/json":
            return _json_error(415, "send the body as Content-Type: application/json")
        origin = request.headers.get("Origin")
        if origin is not None and not self._own_origin(origin.strip().lower(), request):
            return _json_error(
                403, "cross-origin requests are refused (see [http] allowed_origins)"
            )
        return None

    def _own_origin(self, origin: str, request: web.Request) -> bool:
        if origin in self.origins:
            return True
        host = request.headers.get("Host", "").strip().lower()
        return bool(host) and origin in (f"http://{host}", f"https://{host}")

    def _identity(self, request: web.Request) -> web.Response | None:
        given = bearer(request)
        if given is None:
            return _json_error(401, "use the header Authorization: Bearer <token>")
        if not self.credentials.required:
            request[IDENTITY] = OPERATOR
            return None
        if not given and request.path.endswith("/events"):
            given = request.query.get("token", "")  # EventSource cannot send headers
        identity = self.credentials.identify(given)
        if identity is None:
            return _json_error(401, "missing or wrong bearer token")
        if not identity.can_post and request.method not in _SAFE_METHODS:
            return _json_error(403, "posting needs a [transports.web] users token")
        request[IDENTITY] = identity
        return None


def identity_of(request: web.Request) -> Identity:
    """The identity the middleware established (the operator outside ``/api/``)."""
    found = request.get(IDENTITY)
    return found if isinstance(found, Identity) else OPERATOR
