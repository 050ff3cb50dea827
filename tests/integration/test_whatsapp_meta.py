"""WhatsApp through the Meta Cloud API: signed webhooks into the daemon (a subprocess),
replies out to a fake Graph API."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from tests.fakes.whatsapp_api import PHONE_NUMBER_ID, FakeWhatsApp
from tests.fakes.whatsapp_payloads import (
    CUSTOMER,
    VERIFY_TOKEN,
    meta_config,
    meta_image,
    meta_request,
    meta_signature,
    meta_status,
    meta_text,
)
from tests.integration.daemon import DaemonProcess

MakeDaemon = Callable[..., DaemonProcess]


@pytest.fixture
def daemon(make_daemon: MakeDaemon, fake_whatsapp: FakeWhatsApp) -> DaemonProcess:
    return make_daemon(extra=meta_config(fake_whatsapp)).start()


def deliver(daemon: DaemonProcess, payload: dict[str, Any]) -> httpx.Response:
    raw, headers = meta_request(payload)
    with daemon.client() as client:
        return client.post("/webhooks/whatsapp", content=raw, headers=headers)


def test_the_verification_handshake(daemon: DaemonProcess) -> None:
    with daemon.client() as client:
        ok = client.get(
            "/webhooks/whatsapp",
            params={
                "hub.mode": "subscribe",
                "hub.verify_token": VERIFY_TOKEN,
                "hub.challenge": "1158201444",
            },
        )
        assert (ok.status_code, ok.text) == (200, "1158201444")
        for params in (
            {"hub.mode": "subscribe", "hub.verify_token": "wrong", "hub.challenge": "1"},
            {"hub.mode": "unsubscribe", "hub.verify_token": VERIFY_TOKEN, "hub.challenge": "1"},
            {},
        ):
            assert client.get("/webhooks/whatsapp", params=params).status_code == 403


def test_a_text_message_is_answered_once(
    daemon: DaemonProcess, fake_whatsapp: FakeWhatsApp
) -> None:
    payload = meta_text("Does it come in another colour? 🎨")
    assert deliver(daemon, payload).status_code == 200
    assert deliver(daemon, payload).status_code == 200  # Meta redelivers: one turn
    assert fake_whatsapp.wait(lambda: fake_whatsapp.sent)
    assert not fake_whatsapp.wait(lambda: len(fake_whatsapp.sent) > 1, timeout=1.0)
    assert fake_whatsapp.sent == [("graph", CUSTOMER, "echo: Does it come in another colour? 🎨")]
    call = fake_whatsapp.calls[0]
    assert call.body["messaging_product"] == "whatsapp" and call.body["type"] == "text"
    assert call.path == f"/v26.0/{PHONE_NUMBER_ID}/messages"

    status = meta_status("read")
    assert deliver(daemon, status).status_code == 200
    assert deliver(daemon, meta_text("status")).status_code == 200  # a command, no mention needed
    assert fake_whatsapp.wait(lambda: len(fake_whatsapp.sent) == 2)
    assert not fake_whatsapp.texts()[1].startswith("echo:")  # the command answered


def test_signatures_are_checked_on_the_raw_body(
    daemon: DaemonProcess, fake_whatsapp: FakeWhatsApp
) -> None:
    raw, headers = meta_request(meta_text("héllo 👋"))
    reserialised = json.dumps(json.loads(raw), ensure_ascii=False).encode()
    forged = [
        (reserialised, headers),
        (raw, meta_signature(raw, secret="wrong")),
        (raw, {"X-Hub-Signature-256": "sha256=00"}),
        (raw, {"Content-Type": "application/json"}),
    ]
    with daemon.client() as client:
        codes = [
            client.post("/webhooks/whatsapp", content=b, headers=h).status_code for b, h in forged
        ]
        metrics = client.get("/metrics").text
    assert codes == [401, 401, 401, 401]
    assert 'musher_webhook_verifications_failed_total{transport="whatsapp"} 4' in metrics
    assert not fake_whatsapp.wait(lambda: fake_whatsapp.sent, timeout=1.0)


def test_other_message_types_get_one_polite_note_a_day(
    daemon: DaemonProcess, fake_whatsapp: FakeWhatsApp
) -> None:
    assert deliver(daemon, meta_image()).status_code == 200
    assert deliver(daemon, meta_image()).status_code == 200
    assert fake_whatsapp.wait(lambda: fake_whatsapp.sent)
    assert not fake_whatsapp.wait(lambda: len(fake_whatsapp.sent) > 1, timeout=1.0)
    assert "only read text messages" in fake_whatsapp.texts()[0]


def test_malformed_payloads_are_refused_and_nothing_is_taken(
    daemon: DaemonProcess, fake_whatsapp: FakeWhatsApp
) -> None:
    good = meta_text("only this one")
    bad_message = {"from": CUSTOMER, "type": "text", "text": {"body": "no id"}}
    mixed = json.loads(json.dumps(good))
    mixed["entry"][0]["changes"][0]["value"]["messages"].append(bad_message)
    cases: list[Any] = [
        mixed,
        {"object": "page"},
        [],
        {"object": "whatsapp_business_account", "entry": "x"},
    ]
    for case in cases:
        assert deliver(daemon, case).status_code == 400
    with daemon.client() as client:
        junk = b"\xff\xfe not json"
        assert (
            client.post(
                "/webhooks/whatsapp", content=junk, headers=meta_signature(junk)
            ).status_code
            == 400
        )
        huge = b"{" + b" " * 1_100_000 + b"}"
        assert (
            client.post(
                "/webhooks/whatsapp", content=huge, headers=meta_signature(huge)
            ).status_code
            == 413
        )
    assert deliver(daemon, good).status_code == 200  # not journalled by the mixed delivery
    assert fake_whatsapp.wait(lambda: fake_whatsapp.sent)
    assert fake_whatsapp.texts() == ["echo: only this one"]


def test_a_rate_limited_send_waits_out_the_window(
    daemon: DaemonProcess, fake_whatsapp: FakeWhatsApp
) -> None:
    fake_whatsapp.fail("graph", 429, retry_after=1.5, code=131056)
    assert deliver(daemon, meta_text("hello")).status_code == 200
    assert fake_whatsapp.wait(lambda: fake_whatsapp.sent)
    limited, retried = fake_whatsapp.calls[:2]
    assert (limited.status, retried.status) == (429, 200)
    assert retried.at - limited.at >= 1.5
    assert fake_whatsapp.texts() == ["echo: hello"]


def test_a_send_committed_before_a_502_is_not_sent_again(
    daemon: DaemonProcess, fake_whatsapp: FakeWhatsApp
) -> None:
    fake_whatsapp.fail("graph", 502, commit=True)
    assert deliver(daemon, meta_text("hello")).status_code == 200
    assert fake_whatsapp.wait(lambda: fake_whatsapp.sent)
    assert not fake_whatsapp.wait(lambda: len(fake_whatsapp.calls) > 1, timeout=1.5)
    assert fake_whatsapp.texts() == ["echo: hello"]


def test_outside_the_24_hour_window_nothing_is_sent_and_readyz_says_so(
    daemon: DaemonProcess, fake_whatsapp: FakeWhatsApp
) -> None:
    late = meta_text("sent yesterday", ts=time.time() - 25 * 3600)
    assert deliver(daemon, late).status_code == 200
    with daemon.client() as client:
        assert fake_whatsapp.wait(lambda: "replies held" in client.get("/readyz").text)
        ready = client.get("/readyz")
    assert ready.status_code == 200
    assert f"+{CUSTOMER}" in ready.json()["components"]["transport:whatsapp"]
    assert fake_whatsapp.calls == []
    assert "allows free-form replies only within 24 h" in daemon.log_text()

    fake_whatsapp.fail("graph", 400, code=131047)
    assert deliver(daemon, meta_text("and now?", sender="447700900123")).status_code == 200
    with daemon.client() as client:
        assert fake_whatsapp.wait(lambda: "+447700900123" in client.get("/readyz").text)
    assert "re-engagement" in daemon.log_text()
