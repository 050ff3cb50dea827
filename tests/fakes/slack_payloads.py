"""What Slack sends: Events API and slash-command bodies, signed the way Slack signs them.

The signature is computed here independently of ``transports.slack.verify`` (HMAC-SHA256
over ``v0:{timestamp}:{body}`` with the signing secret), so tests check the transport
against the published scheme, not against itself.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import time
import urllib.parse
from typing import Any

from tests.fakes.slack_api import BOT_TOKEN, FakeSlack

SECRET = "fake-signing-secret"
_ids = itertools.count(1)


def sign(body: bytes, secret: str = SECRET, ts: int | None = None) -> dict[str, str]:
    stamp = str(int(time.time()) if ts is None else ts)
    digest = hmac.new(secret.encode(), b"v0:" + stamp.encode() + b":" + body, hashlib.sha256)
    return {"X-Slack-Request-Timestamp": stamp, "X-Slack-Signature": "v0=" + digest.hexdigest()}


def event(
    text: str,
    *,
    channel: str = "C1",
    ts: str | None = None,
    user: str = "U1",
    kind: str = "app_mention",
    thread_ts: str | None = None,
    channel_type: str | None = None,
    event_id: str | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """An ``event_callback`` body carrying one message or mention."""
    n = next(_ids)
    inner: dict[str, Any] = {
        "type": kind,
        "user": user,
        "text": text,
        "channel": channel,
        "ts": ts or f"{1_800_000_000 + n}.000200",
        "event_ts": ts or f"{1_800_000_000 + n}.000200",
        **extra,
    }
    if thread_ts:
        inner["thread_ts"] = thread_ts
    if channel_type:
        inner["channel_type"] = channel_type
    return {
        "token": "legacy",
        "team_id": "T1",
        "api_app_id": "A1",
        "type": "event_callback",
        "event_id": event_id or f"Ev{n:08d}",
        "event_time": 1_800_000_000 + n,
        "event": inner,
    }


def command(
    text: str,
    response_url: str,
    *,
    name: str = "/musher",
    channel: str = "C1",
    user: str = "U1",
    trigger_id: str | None = None,
) -> dict[str, str]:
    """A slash command's form fields."""
    return {
        "token": "legacy",
        "team_id": "T1",
        "team_domain": "fake",
        "channel_id": channel,
        "channel_name": "general",
        "user_id": user,
        "user_name": user.lower(),
        "command": name,
        "text": text,
        "api_app_id": "A1",
        "response_url": response_url,
        "trigger_id": trigger_id or f"{next(_ids)}.1.abc",
    }


def json_request(
    body: dict[str, Any], retry: int | None = None, **sign_kw: Any
) -> tuple[bytes, dict[str, str]]:
    """Raw bytes and headers of a signed Events API delivery (``retry`` → X-Slack-Retry-Num)."""
    raw = json.dumps(body).encode()
    headers = {"Content-Type": "application/json", **sign(raw, **sign_kw)}
    if retry:
        headers |= {"X-Slack-Retry-Num": str(retry), "X-Slack-Retry-Reason": "http_timeout"}
    return raw, headers


def form_request(fields: dict[str, str], **sign_kw: Any) -> tuple[bytes, dict[str, str]]:
    """Raw bytes and headers of a signed slash command."""
    raw = urllib.parse.urlencode(fields).encode()
    return raw, {"Content-Type": "application/x-www-form-urlencoded", **sign(raw, **sign_kw)}


def envelope(payload: dict[str, Any], kind: str = "events_api", retry: int = 0) -> dict[str, Any]:
    """A Socket Mode envelope around ``payload``."""
    return {
        "envelope_id": f"env-{next(_ids)}",
        "type": kind,
        "accepts_response_payload": kind != "events_api",
        "retry_attempt": retry,
        "retry_reason": "timeout" if retry else "",
        "payload": payload,
    }


def slack_config(slack: FakeSlack, extra: str = "") -> str:
    """``[transports.slack]`` in HTTP mode against ``slack``, plus ``extra`` lines."""
    return f"""
[transports.slack]
enabled = true
mode = "http"
bot_token = "{BOT_TOKEN}"
signing_secret = "{SECRET}"
api_base_url = "{slack.api_url}"
{extra}
"""
