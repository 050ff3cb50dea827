"""B2 HTTP intake, Twilio half: a signed Twilio WhatsApp form post → ``POST /webhooks/twilio``.

BENCH.md B2 asks for each webhook against a bare handler that checks the same signature;
this is :mod:`bench.whatsapp_intake`'s run with the Twilio provider. All processes bind
127.0.0.1 and are stopped at the end:

* the daemon: ``python -m bot run`` (echo provider, 50 ms coalesce window, durable
  journal) with ``[transports.whatsapp]`` on the Twilio provider and ``public_url`` set to
  :data:`PUBLIC_URL` (the URL signatures cover, as behind a proxy): the route reads the raw
  body, parses the form, verifies ``X-Twilio-Signature`` (HMAC-SHA1 over the URL and the
  sorted form) and journals the message through ingress before its empty TwiML answer;
* a fake Twilio API (``--fake-api``) as ``api_base_url``, answering the sends of the turns
  that run during the load (``POST /2010-04-01/Accounts/{sid}/Messages.json``, 201 with a
  ``sid``); ``GET /stats`` counts them;
* the baseline (``--bare``): a bare aiohttp handler on ``POST /webhooks/twilio`` that reads
  the body, parses the form, verifies the same signature and answers the same TwiML;
* the load generator (``--loadgen``): every request a freshly signed form as Twilio posts
  it for an incoming WhatsApp text (a unique ``MessageSid``), from one of ``SENDERS``
  numbers.

Run alone: ``python -m bench.twilio_intake`` (``--reps 5 --duration 3`` for full size).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import itertools
import random
from typing import Any
from urllib.parse import parse_qsl, urlencode

from aiohttp import web

from bench.intake import RequestFactory
from bench.whatsapp_intake import Webhook, counting_api, sender_number, webhook_main

ACCOUNT_SID = "AC" + "0123456789abcdef" * 2
AUTH_TOKEN = "bench-auth-token"
FROM_NUMBER = "whatsapp:+14155238886"
PUBLIC_URL = "https://bot.example.org/webhooks/twilio"
TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response></Response>'


def signature(params: list[tuple[str, str]]) -> str:
    data = PUBLIC_URL + "".join(k + v for k, v in sorted(params))
    return base64.b64encode(
        hmac.new(AUTH_TOKEN.encode(), data.encode(), hashlib.sha1).digest()
    ).decode()


class Forms:
    """Signed Twilio form posts for an incoming WhatsApp text, unique ``MessageSid`` each."""

    def __init__(self) -> None:
        self.prefix = f"{random.randrange(16**8):08x}"
        self.seq = itertools.count()

    def requests(self) -> RequestFactory:
        def make(w: int, i: int, workers: int) -> tuple[str, bytes, dict[str, str]]:
            n = next(self.seq)
            sender = sender_number(w, i, workers)
            sid = f"SM{self.prefix}{n:024x}"
            params = [
                ("SmsMessageSid", sid), ("NumMedia", "0"), ("ProfileName", "Bench"),
                ("MessageType", "text"), ("SmsSid", sid), ("WaId", sender),
                ("SmsStatus", "received"), ("Body", f"please have a look at this, message {n}"),
                ("To", FROM_NUMBER), ("NumSegments", "1"), ("ReferralNumMedia", "0"),
                ("MessageSid", sid), ("AccountSid", ACCOUNT_SID),
                ("From", f"whatsapp:+{sender}"), ("ApiVersion", "2010-04-01"),
            ]  # fmt: skip
            headers = {
                "Content-Type": "application/x-www-form-urlencoded",
                "X-Twilio-Signature": signature(params),
            }
            return "/webhooks/twilio", urlencode(params).encode(), headers

        return make


def _twilio_api() -> web.Application:
    """``POST /2010-04-01/Accounts/{sid}/Messages.json`` → 201 with a message ``sid``."""

    def answer(n: int) -> tuple[int, dict[str, Any]]:
        return 201, {"sid": f"SM{n:032x}", "status": "queued"}

    return counting_api("/2010-04-01/Accounts/{sid}/Messages.json", answer)


def _bare_twilio() -> web.Application:
    """``POST /webhooks/twilio``: read, parse the form, verify the signature, TwiML."""

    async def post(request: web.Request) -> web.Response:
        raw = await request.read()
        params = parse_qsl(raw.decode(), keep_blank_values=True)
        given = request.headers.get("X-Twilio-Signature", "")
        if not hmac.compare_digest(signature(params).encode(), given.encode()):
            return web.Response(status=401)
        if not dict(params).get("MessageSid"):
            return web.Response(status=400)
        return web.Response(text=TWIML, content_type="text/xml")

    app = web.Application()
    app.router.add_post("/webhooks/twilio", post)
    return app


TWILIO = Webhook(
    name="http_intake_twilio",
    module="bench.twilio_intake",
    config=f"""
[transports.whatsapp]
enabled = true
provider = "twilio"

[transports.whatsapp.twilio]
account_sid = "{ACCOUNT_SID}"
auth_token = "{AUTH_TOKEN}"
from_number = "{FROM_NUMBER}"
api_base_url = "{{api}}"
public_url = "{PUBLIC_URL}"
""",
    params={
        "endpoint": "POST /webhooks/twilio (signed Twilio form post, one WhatsApp text)",
        "ours": (
            "python -m bot run, [transports.whatsapp] provider=twilio: form parse, "
            "X-Twilio-Signature check over public_url and the form, ingress journal before "
            "the TwiML answer"
        ),
        "bare": "aiohttp handler: read body, parse form, verify X-Twilio-Signature, TwiML",
    },
    requests=lambda: Forms().requests(),
    bare=_bare_twilio,
    fake_api=_twilio_api,
)


if __name__ == "__main__":
    webhook_main(TWILIO)
