"""R9/R12 for ``POST /webhooks/whatsapp`` (Meta) and ``POST /webhooks/twilio``: hypothesis
over signature headers and bodies against the real routes (in-process, real socket).
Figures: 5xx = 0; forged requests accepted = 0; correctly signed ones accepted, and signed
junk answered 4xx with nothing handed in."""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.db import Database
from bot.kv import SCHEMA, TransportState
from config.models import WhatsAppMetaConfig, WhatsAppTwilioConfig
from tests.fakes.whatsapp_api import ACCOUNT_SID, AUTH_TOKEN, FROM_NUMBER
from tests.fakes.whatsapp_payloads import (
    APP_SECRET,
    meta_request,
    meta_signature,
    meta_text,
    twilio_form,
    twilio_signature,
)
from tests.reliability.webhook_routes import FUZZ, Route, header_bytes, signatures
from transports.whatsapp.meta import GraphApi
from transports.whatsapp.send import Outbound
from transports.whatsapp.twilio import TwilioApi
from transports.whatsapp.webhook import Intake, MetaWebhook, TwilioWebhook

NOWHERE = "http://127.0.0.1:9"  # sends (polite notes) fail fast; only intake matters here


class WhatsAppRoute(Route):
    provider = "meta"

    def mount(self) -> None:
        self.path = "/webhooks/whatsapp" if self.provider == "meta" else "/webhooks/twilio"

    async def opening(self) -> None:
        self.dir = tempfile.TemporaryDirectory()
        self.db = await Database.open(Path(self.dir.name) / "state.db", SCHEMA)
        if self.provider == "meta":
            cfg = WhatsAppMetaConfig(access_token="t", phone_number_id="1", graph_base_url=NOWHERE)
            api: Any = GraphApi(cfg)
        else:
            tw = WhatsAppTwilioConfig(
                account_sid=ACCOUNT_SID,
                auth_token=AUTH_TOKEN,
                from_number=FROM_NUMBER,
                api_base_url=NOWHERE,
            )
            api = TwilioApi(tw)
        self.api = api
        outbound = Outbound(api, TransportState(self.db), self.metrics)
        intake = Intake(outbound, [], [], self.metrics, 4096, self.track)
        intake.sink = self.sink
        if self.provider == "meta":
            MetaWebhook(intake, APP_SECRET, "verify").mount(self.app)
        else:
            TwilioWebhook(intake, AUTH_TOKEN, None).mount(self.app)

    async def closing(self) -> None:
        await super().closing()
        await self.api.aclose()
        await self.db.aclose()
        self.dir.cleanup()


class TwilioRoute(WhatsAppRoute):
    provider = "twilio"


@pytest.fixture(scope="module")
def meta() -> Iterator[tuple[WhatsAppRoute, httpx.Client]]:
    with WhatsAppRoute() as route, httpx.Client(timeout=10) as client:
        yield route, client


@pytest.fixture(scope="module")
def twilio() -> Iterator[tuple[WhatsAppRoute, httpx.Client]]:
    with TwilioRoute() as route, httpx.Client(timeout=10) as client:
        yield route, client


meta_bodies = st.one_of(
    st.binary(max_size=600),
    st.text(max_size=200).map(lambda t: json.dumps(meta_text(t)).encode()),
)


@FUZZ
@given(sig=signatures, body=meta_bodies)
def test_meta_forged_signatures_are_refused_without_a_5xx(
    meta: tuple[WhatsAppRoute, httpx.Client], sig: bytes, body: bytes
) -> None:
    route, client = meta
    before = len(route.sink.messages)
    headers = {"Content-Type": "application/json", "X-Hub-Signature-256": header_bytes(sig)}
    response = client.post(route.endpoint, content=body, headers=headers)
    assert response.status_code in (401, 413), response.text
    assert len(route.sink.messages) == before


@FUZZ
@given(text=st.text(max_size=200), junk=st.binary(max_size=400))
def test_meta_correct_signatures_are_taken_and_signed_junk_is_a_4xx(
    meta: tuple[WhatsAppRoute, httpx.Client], text: str, junk: bytes
) -> None:
    route, client = meta
    raw, headers = meta_request(meta_text(text))
    assert client.post(route.endpoint, content=raw, headers=headers).status_code == 200
    assert route.sink.messages[-1].text == text
    before = len(route.sink.messages)
    answer = client.post(route.endpoint, content=junk, headers=meta_signature(junk))
    assert answer.status_code in (200, 400)  # 200 only for a payload with nothing in it
    assert len(route.sink.messages) == before


form_values = st.text(st.characters(blacklist_categories=("Cs",)), max_size=60)


@FUZZ
@given(
    sig=signatures, body=form_values, extra=st.dictionaries(form_values, form_values, max_size=4)
)
def test_twilio_forged_signatures_are_refused_without_a_5xx(
    twilio: tuple[WhatsAppRoute, httpx.Client], sig: bytes, body: str, extra: dict[str, str]
) -> None:
    route, client = twilio
    before = len(route.sink.messages)
    form = {**extra, **twilio_form(body)}
    headers = {"X-Twilio-Signature": header_bytes(sig)}
    response = client.post(route.endpoint, data=form, headers=headers)
    assert response.status_code in (401, 413), response.text
    assert len(route.sink.messages) == before


@FUZZ
@given(
    body=form_values.filter(str.strip), extra=st.dictionaries(form_values, form_values, max_size=4)
)
def test_twilio_correct_signatures_are_taken(
    twilio: tuple[WhatsAppRoute, httpx.Client], body: str, extra: dict[str, str]
) -> None:
    route, client = twilio
    form = {**extra, **twilio_form(body)}
    headers = twilio_signature(route.endpoint, form)
    response = client.post(route.endpoint, data=form, headers=headers)
    assert response.status_code == 200, response.text
    assert route.sink.messages[-1].text == body
    partial = {k: v for k, v in form.items() if k not in ("MessageSid", "SmsMessageSid")}
    refused = client.post(
        route.endpoint, data=partial, headers=twilio_signature(route.endpoint, partial)
    )
    assert refused.status_code == 400
