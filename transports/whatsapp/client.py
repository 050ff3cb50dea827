"""The kept-alive HTTP client both WhatsApp providers send with.

aiohttp rather than httpx: every reply a turn sends is one request, and under load httpx
spent about 1 ms of CPU on each (its connection pool's bookkeeping) where aiohttp spends
about 150 µs (measured against the fake Graph API on this project's 2-core machines).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp
from pydantic import SecretStr

from config.errors import TransientError

CONNECTIONS = 8
"""A few kept-alive connections: more only churn under load and buy no throughput from one
API host."""


@dataclass(frozen=True, slots=True)
class Answer:
    """An API's answer: the status, the headers (for ``Retry-After``) and the JSON object
    of the body (empty when the body is not one)."""

    status: int
    headers: Mapping[str, str]
    data: dict[str, Any]


class ApiClient:
    """POSTs to one API base URL over kept-alive connections, opened on first use (so that
    it belongs to the loop that sends)."""

    def __init__(
        self,
        base_url: str,
        *,
        timeout: float,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._headers = dict(headers or {})
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._session: aiohttp.ClientSession | None = None

    async def post(
        self,
        path: str,
        number: str,
        *,
        json_body: object = None,
        form: Mapping[str, str] | None = None,
    ) -> Answer:
        """POST ``json_body`` (as JSON) or ``form`` (URL-encoded) to ``base_url + path``.

        Raises:
            TransientError: no answer (refused, reset, timed out): the send to ``number``
                may or may not have happened.
        """
        try:
            async with self._open().post(
                self.base_url + path, json=json_body, data=form
            ) as response:
                raw = await response.read()
                return Answer(response.status, dict(response.headers), _json_object(raw))
        except (aiohttp.ClientError, TimeoutError) as err:
            raise TransientError(
                f"whatsapp: sending to {number} may have failed: {err!r}"
            ) from None

    def _open(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                headers=self._headers,
                timeout=self._timeout,
                connector=aiohttp.TCPConnector(limit=CONNECTIONS),
            )
        return self._session

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


def basic_auth(login: str, password: SecretStr) -> str:
    """The ``Authorization`` value of HTTP Basic authentication."""
    return aiohttp.encode_basic_auth(login, password.get_secret_value())


def _json_object(raw: bytes) -> dict[str, Any]:
    try:
        data = json.loads(raw)
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}
