"""The Meta WhatsApp Cloud API: ``POST {graph_base_url}/{version}/{phone_number_id}/messages``."""

from __future__ import annotations

from bot.ratewindow import retry_after
from config.errors import PermanentError, TransientError
from config.models import WhatsAppMetaConfig
from transports.whatsapp.client import ApiClient
from transports.whatsapp.send import OutsideWindow, RateLimited

RATE_LIMIT_CODES = frozenset({4, 80007, 130429, 131048, 131056})  # 131056: pair rate limit
RE_ENGAGEMENT = 131047
DEFAULT_WAIT_S = 5.0  # when a rate-limit answer says nothing about how long


class GraphApi:
    """Sends text messages from ``phone_number_id`` (see :class:`~.send.Api`)."""

    def __init__(self, cfg: WhatsAppMetaConfig, timeout: float = 10.0) -> None:
        assert cfg.access_token is not None
        self.path = f"/{cfg.api_version}/{cfg.phone_number_id}/messages"
        self.client = ApiClient(
            cfg.graph_base_url,
            timeout=timeout,
            headers={"Authorization": f"Bearer {cfg.access_token.get_secret_value()}"},
        )

    async def post(self, number: str, text: str) -> str:
        body = {
            "messaging_product": "whatsapp",
            "recipient_type": "individual",
            "to": number.removeprefix("+"),
            "type": "text",
            "text": {"preview_url": False, "body": text},
        }
        answer = await self.client.post(self.path, number, json_body=body)
        status, data = answer.status, answer.data
        if status == 200:
            messages = data.get("messages")
            first = messages[0] if isinstance(messages, list) and messages else {}
            return str(first.get("id", "")) if isinstance(first, dict) else ""
        error = data.get("error")
        error = error if isinstance(error, dict) else {}
        code, message = error.get("code"), error.get("message") or f"HTTP {status}"
        if status == 429 or code in RATE_LIMIT_CODES:
            raise RateLimited(retry_after(answer.headers, DEFAULT_WAIT_S))
        if code == RE_ENGAGEMENT:
            raise OutsideWindow(message)
        if status >= 500:
            raise TransientError(f"whatsapp: Graph API answered {status}: {message}")
        raise PermanentError(f"whatsapp: Graph API refused a send to {number}: {message} ({code})")

    async def aclose(self) -> None:
        await self.client.aclose()
