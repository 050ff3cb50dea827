"""The Meta WhatsApp Cloud API: ``POST {graph_base_url}/{version}/{phone_number_id}/messages``."""

from __future__ import annotations

from typing import Any

import httpx

from bot.ratewindow import retry_after
from config.errors import PermanentError, TransientError
from config.models import WhatsAppMetaConfig
from transports.whatsapp.send import OutsideWindow, RateLimited

RATE_LIMIT_CODES = frozenset({4, 80007, 130429, 131048, 131056})  # 131056: pair rate limit
RE_ENGAGEMENT = 131047
DEFAULT_WAIT_S = 5.0  # when a rate-limit answer says nothing about how long
# A few kept-alive connections: more only churn (httpx closes those beyond its keep-alive
# limit after each request) and make its pool bookkeeping the hot spot under load.
LIMITS = httpx.Limits(max_connections=8, max_keepalive_connections=8)


class GraphApi:
    """Sends text messages from ``phone_number_id`` (see :class:`~.send.Api`)."""

    def __init__(self, cfg: WhatsAppMetaConfig, timeout: float = 10.0) -> None:
        assert cfg.access_token is not None
        self.path = f"/{cfg.api_version}/{cfg.phone_number_id}/messages"
        self.client = httpx.AsyncClient(
            base_url=cfg.graph_base_url.rstrip("/"),
            headers={"Authorization": f"Bearer {cfg.access_token.get_secret_value()}"},
            timeout=timeout,
            limits=LIMITS,
        )

    async def post(self, number: str, text: str) -> str:
        body = {
            "messaging_product": "whatsapp",
            "recipient_type": "individual",
            "to": number.removeprefix("+"),
            "type": "text",
            "text": {"preview_url": False, "body": text},
        }
        try:
            response = await self.client.post(self.path, json=body)
        except httpx.HTTPError as err:
            raise TransientError(
                f"whatsapp: sending to {number} may have failed: {err!r}"
            ) from None
        data = json_body(response)
        if response.status_code == 200:
            messages = data.get("messages")
            first = messages[0] if isinstance(messages, list) and messages else {}
            return str(first.get("id", "")) if isinstance(first, dict) else ""
        error = data.get("error")
        error = error if isinstance(error, dict) else {}
        code, message = error.get("code"), error.get("message") or f"HTTP {response.status_code}"
        if response.status_code == 429 or code in RATE_LIMIT_CODES:
            raise RateLimited(retry_after(response.headers, DEFAULT_WAIT_S))
        if code == RE_ENGAGEMENT:
            raise OutsideWindow(message)
        if response.status_code >= 500:
            raise TransientError(f"whatsapp: Graph API answered {response.status_code}: {message}")
        raise PermanentError(f"whatsapp: Graph API refused a send to {number}: {message} ({code})")

    async def aclose(self) -> None:
        await self.client.aclose()


def json_body(response: httpx.Response) -> dict[str, Any]:
    try:
        data = response.json()
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}
