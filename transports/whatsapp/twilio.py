"""WhatsApp through Twilio: ``POST {api_base_url}/2010-04-01/Accounts/{sid}/Messages.json``."""

from __future__ import annotations

from bot.ratewindow import retry_after
from config.errors import PermanentError, TransientError
from config.models import WhatsAppTwilioConfig
from transports.whatsapp.client import ApiClient, basic_auth
from transports.whatsapp.meta import DEFAULT_WAIT_S
from transports.whatsapp.send import OutsideWindow, RateLimited

OUTSIDE_WINDOW = 63016  # "failed to send freeform message because you are outside the window"
RATE_LIMITED = 20429


class TwilioApi:
    """Sends WhatsApp messages from ``from_number`` (see :class:`~.send.Api`)."""

    def __init__(self, cfg: WhatsAppTwilioConfig, timeout: float = 10.0) -> None:
        assert cfg.auth_token is not None and cfg.account_sid and cfg.from_number
        self.sender = cfg.from_number
        self.path = f"/2010-04-01/Accounts/{cfg.account_sid}/Messages.json"
        self.client = ApiClient(
            cfg.api_base_url,
            timeout=timeout,
            headers={"Authorization": basic_auth(cfg.account_sid, cfg.auth_token)},
        )

    async def post(self, number: str, text: str) -> str:
        form = {"To": f"whatsapp:{number}", "From": self.sender, "Body": text}
        answer = await self.client.post(self.path, number, form=form)
        status, data = answer.status, answer.data
        if status in (200, 201):
            return str(data.get("sid", ""))
        code, message = data.get("code"), data.get("message") or f"HTTP {status}"
        if status == 429 or code == RATE_LIMITED:
            raise RateLimited(retry_after(answer.headers, DEFAULT_WAIT_S))
        if code == OUTSIDE_WINDOW:
            raise OutsideWindow(str(message))
        if status >= 500:
            raise TransientError(f"whatsapp: Twilio answered {status}: {message}")
        raise PermanentError(f"whatsapp: Twilio refused a send to {number}: {message} ({code})")

    async def aclose(self) -> None:
        await self.client.aclose()
