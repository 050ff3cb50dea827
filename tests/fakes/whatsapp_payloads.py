"""What Meta and Twilio send to a WhatsApp webhook, signed the way they sign it.

Signatures are computed here from the published schemes, independently of
``transports.whatsapp.verify``: Meta's ``X-Hub-Signature-256`` is ``sha256=`` + hex
HMAC-SHA256 of the raw body with the app secret; Twilio's ``X-Twilio-Signature`` is base64
HMAC-SHA1 of the full URL followed by each form parameter's name and value, sorted by name.
Payloads follow Meta's canonical samples (WABA ``102290129340398``, phone number id
``106540352242922``).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import itertools
import json
import time
from typing import Any

from tests.fakes.whatsapp_api import (
    ACCOUNT_SID,
    AUTH_TOKEN,
    FROM_NUMBER,
    GRAPH_TOKEN,
    PHONE_NUMBER_ID,
    FakeWhatsApp,
)

APP_SECRET = "meta-app-secret"
VERIFY_TOKEN = "my-verify-token"
CUSTOMER = "16505551234"
_ids = itertools.count(1)


def meta_config(fake: FakeWhatsApp, extra: str = "") -> str:
    return (
        f'\n[transports.whatsapp]\nenabled = true\nprovider = "meta"\n{extra}\n'
        "[transports.whatsapp.meta]\n"
        f'access_token = "{GRAPH_TOKEN}"\nphone_number_id = "{PHONE_NUMBER_ID}"\n'
        f'app_secret = "{APP_SECRET}"\nverify_token = "{VERIFY_TOKEN}"\n'
        f'graph_base_url = "{fake.url}"\napi_version = "v26.0"\n'
    )


def twilio_config(fake: FakeWhatsApp, extra: str = "") -> str:
    return (
        f'\n[transports.whatsapp]\nenabled = true\nprovider = "twilio"\n{extra}\n'
        "[transports.whatsapp.twilio]\n"
        f'account_sid = "{ACCOUNT_SID}"\nauth_token = "{AUTH_TOKEN}"\n'
        f'from_number = "{FROM_NUMBER}"\napi_base_url = "{fake.url}"\n'
    )


def _value(messages: list[dict[str, Any]] | None = None, **extra: Any) -> dict[str, Any]:
    value: dict[str, Any] = {
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": "15550783881", "phone_number_id": PHONE_NUMBER_ID},
        **extra,
    }
    if messages is not None:
        value["contacts"] = [{"profile": {"name": "Sheena Nelson"}, "wa_id": CUSTOMER}]
        value["messages"] = messages
    return {
        "object": "whatsapp_business_account",
        "entry": [{"id": "102290129340398", "changes": [{"field": "messages", "value": value}]}],
    }


def meta_message(
    kind: str = "text",
    sender: str = CUSTOMER,
    mid: str | None = None,
    ts: float | None = None,
    **content: Any,
) -> dict[str, Any]:
    return {
        "from": sender,
        "id": mid or f"wamid.HBgLMTY1MDM4Nzk0MzkVAgASGBQz{next(_ids):08d}",
        "timestamp": str(int(time.time() if ts is None else ts)),
        "type": kind,
        **content,
    }


def meta_text(body: str, **kw: Any) -> dict[str, Any]:
    return _value([meta_message("text", text={"body": body}, **kw)])


def meta_image(**kw: Any) -> dict[str, Any]:
    image = {"caption": "", "mime_type": "image/jpeg", "sha256": "abc", "id": "1003383421387256"}
    return _value([meta_message("image", image=image, **kw)])


def meta_status(
    status: str = "delivered", errors: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "id": "wamid.HBgLMTY1MDM4Nzk0MzkVAgARGBI3MTE5MjVBOEFDMUNDODdGOEYA",
        "status": status,
        "timestamp": str(int(time.time())),
        "recipient_id": CUSTOMER,
    }
    if errors:
        entry["errors"] = errors
    return _value(statuses=[entry])


def meta_signature(body: bytes, secret: str = APP_SECRET) -> dict[str, str]:
    digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return {"Content-Type": "application/json", "X-Hub-Signature-256": f"sha256={digest}"}


def meta_request(payload: dict[str, Any]) -> tuple[bytes, dict[str, str]]:
    """Meta's bytes (compact JSON, non-ASCII escaped as Meta does) and its signature."""
    raw = json.dumps(payload, separators=(",", ":")).encode()
    return raw, meta_signature(raw)


def twilio_form(body: str, sender: str = f"whatsapp:+{CUSTOMER}", **extra: str) -> dict[str, str]:
    return {
        "SmsMessageSid": (sid := f"SM{next(_ids):032d}"),
        "MessageSid": sid,
        "AccountSid": ACCOUNT_SID,
        "From": sender,
        "To": FROM_NUMBER,
        "Body": body,
        "NumMedia": "0",
        "ProfileName": "Sheena",
        "WaId": sender.removeprefix("whatsapp:+"),
        **extra,
    }


def twilio_signature(url: str, params: dict[str, str], token: str = AUTH_TOKEN) -> dict[str, str]:
    data = url + "".join(name + params[name] for name in sorted(params))
    digest = hmac.new(token.encode(), data.encode(), hashlib.sha1).digest()
    return {"X-Twilio-Signature": base64.b64encode(digest).decode()}
