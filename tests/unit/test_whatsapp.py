"""WhatsApp's pieces on their own: payload parsing, signatures, and the at-most-once,
24-hour-window, rate-window rules of ``Outbound`` over a real ``transport_state`` table."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.db import Database
from bot.kv import SCHEMA, TransportState
from bot.metrics import Metrics
from config.errors import PermanentError, VerificationError
from tests.fakes.whatsapp_payloads import (
    APP_SECRET,
    CUSTOMER,
    meta_image,
    meta_signature,
    meta_status,
    meta_text,
    twilio_form,
    twilio_signature,
)
from transports.whatsapp.send import Outbound, OutsideWindow, RateLimited
from transports.whatsapp.verify import verify_meta, verify_twilio
from transports.whatsapp.wire import Malformed, e164, meta_inbound, twilio_inbound

NUMBER = f"+{CUSTOMER}"


class ScriptedApi:
    """An Api stand-in that answers from a script (exceptions or message ids)."""

    def __init__(self, *script: object) -> None:
        self.script = list(script)
        self.posted: list[tuple[str, str]] = []

    async def post(self, number: str, text: str) -> str:
        self.posted.append((number, text))
        step = self.script.pop(0) if self.script else "wamid.ok"
        if isinstance(step, Exception):
            raise step
        return str(step)


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def state(tmp_path: Path) -> AsyncIterator[TransportState]:
    db = await Database.open(tmp_path / "state.db", SCHEMA)
    yield TransportState(db)
    await db.aclose()


def test_meta_payloads_are_read_whole() -> None:
    inbound = meta_inbound(meta_text("hi 👋"))
    assert [(m.room, m.sender, m.text, m.mentioned) for m in inbound.messages] == [
        (NUMBER, NUMBER, "hi 👋", True)
    ]
    assert inbound.messages[0].event_id.startswith("wamid.")
    assert meta_inbound(meta_image()).other == (NUMBER,)
    status = meta_inbound(meta_status("failed", [{"code": 131047}]))
    assert status.messages == () and status.statuses[0]["status"] == "failed"
    for bad in ({"object": "page"}, {"object": "whatsapp_business_account", "entry": [1]}, []):
        with pytest.raises(Malformed):
            meta_inbound(bad)


def test_numbers_are_e164() -> None:
    assert e164("16505551234") == e164("whatsapp:+16505551234") == "+16505551234"
    for bad in ("", "+0123", "whatsapp:abc", None, "1" * 20):
        with pytest.raises(Malformed):
            e164(bad)


def test_twilio_forms() -> None:
    message = twilio_inbound(twilio_form("hello")).messages[0]
    assert (message.room, message.text) == (NUMBER, "hello")
    assert twilio_inbound(twilio_form("", NumMedia="2")).other == (NUMBER,)
    with pytest.raises(Malformed):
        twilio_inbound(twilio_form(""))


def test_signatures_match_the_published_schemes() -> None:
    raw = json.dumps(meta_text("é")).encode()
    verify_meta(APP_SECRET, meta_signature(raw)["X-Hub-Signature-256"], raw)
    with pytest.raises(VerificationError):
        verify_meta(APP_SECRET, meta_signature(raw + b" ")["X-Hub-Signature-256"], raw)
    url = "https://bot.example.org/webhooks/twilio?a=1"
    form = twilio_form("hi")
    given = twilio_signature(url, form)["X-Twilio-Signature"]
    verify_twilio("fake-twilio-auth-token", url, form.items(), given)
    with pytest.raises(VerificationError):
        verify_twilio("fake-twilio-auth-token", url + "2", form.items(), given)


async def test_a_key_is_sent_at_most_once(state: TransportState) -> None:
    api, clock = ScriptedApi(), Clock()
    out = Outbound(api, state, Metrics(), clock)
    await out.heard(NUMBER, clock.now)
    assert await out.send(NUMBER, "one", "t1.0") == "wamid.ok"
    assert await out.send(NUMBER, "one", "t1.0") is None
    assert api.posted == [(NUMBER, "one")]
    failing = Outbound(ScriptedApi(PermanentError("boom")), state, Metrics(), clock)
    with pytest.raises(PermanentError):
        await failing.send(NUMBER, "two", "t2.0")
    assert await failing.send(NUMBER, "two", "t2.0") is None  # never risk a second copy


async def test_the_24_hour_window(state: TransportState) -> None:
    api, clock = ScriptedApi(OutsideWindow("131047")), Clock()
    out = Outbound(api, state, Metrics(), clock)
    with pytest.raises(PermanentError, match="never"):
        await out.send(NUMBER, "hello", "k1")
    await out.heard(NUMBER, clock.now - 25 * 3600)
    with pytest.raises(PermanentError, match="25 h ago"):
        await out.send(NUMBER, "hello", "k2")
    assert out.health().startswith("ok; replies held for +16505551234")
    await out.heard(NUMBER, clock.now)
    assert out.health() == "ok"
    with pytest.raises(PermanentError, match="re-engagement"):
        await out.send(NUMBER, "hello", "k3")  # the API said 131047
    assert NUMBER in out.health()
    assert api.posted == [(NUMBER, "hello")]


async def test_rate_limits_hold_every_send(state: TransportState) -> None:
    clock = Clock()
    slept: list[float] = []
    api = ScriptedApi(RateLimited(2.0), "wamid.2")
    out = Outbound(api, state, Metrics(), clock)

    async def sleep(seconds: float) -> None:
        slept.append(seconds)
        clock.now += seconds

    out.window.clock, out.window.sleep = clock, sleep
    await out.heard(NUMBER, clock.now)
    assert await out.send(NUMBER, "hi", "k") == "wamid.2"
    assert slept == [2.0] and len(api.posted) == 2
    await state.forget("whatsapp", "sent:", clock.now + 1)
    assert await state.get("whatsapp", "sent:k") is None
