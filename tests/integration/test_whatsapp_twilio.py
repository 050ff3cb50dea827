"""WhatsApp through Twilio: signed form posts into the daemon (a subprocess), replies out to
a fake Twilio Messages API."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest

from tests.fakes.whatsapp_api import FROM_NUMBER, FakeWhatsApp
from tests.fakes.whatsapp_payloads import CUSTOMER, twilio_config, twilio_form, twilio_signature
from tests.integration.daemon import DaemonProcess

MakeDaemon = Callable[..., DaemonProcess]
PUBLIC_URL = "https://musher.example.org/webhooks/twilio"


@pytest.fixture
def daemon(make_daemon: MakeDaemon, fake_whatsapp: FakeWhatsApp) -> DaemonProcess:
    return make_daemon(extra=twilio_config(fake_whatsapp)).start()


def deliver(daemon: DaemonProcess, form: dict[str, str], url: str | None = None) -> httpx.Response:
    signed_url = url or f"{daemon.url}/webhooks/twilio"
    with daemon.client() as client:
        return client.post(
            "/webhooks/twilio", data=form, headers=twilio_signature(signed_url, form)
        )


def test_a_message_gets_empty_twiml_and_the_reply_through_the_api(
    daemon: DaemonProcess, fake_whatsapp: FakeWhatsApp
) -> None:
    form = twilio_form("hi there 👋 " + "word " * 330)
    response = deliver(daemon, form)
    assert response.status_code == 200 and response.headers["Content-Type"].startswith("text/xml")
    assert response.text.endswith("<Response></Response>")
    assert deliver(daemon, form).status_code == 200  # a retry of the same MessageSid
    assert fake_whatsapp.wait(lambda: len(fake_whatsapp.sent) >= 2)
    assert not fake_whatsapp.wait(lambda: len(fake_whatsapp.sent) > 2, timeout=1.0)
    first, second = fake_whatsapp.sent
    assert first[1] == f"whatsapp:+{CUSTOMER}" and len(first[2]) <= 1600
    assert (first[2] + " " + second[2]).startswith("echo: hi there 👋 ")
    assert fake_whatsapp.calls[0].body["From"] == FROM_NUMBER


def test_forged_signatures_and_malformed_forms(
    daemon: DaemonProcess, fake_whatsapp: FakeWhatsApp
) -> None:
    form = twilio_form("forged")
    url = f"{daemon.url}/webhooks/twilio"
    with daemon.client() as client:
        wrong = [
            twilio_signature(url, form, token="wrong"),
            twilio_signature(url + "?x=1", form),
            twilio_signature(url, {**form, "Body": "other"}),
            {},
        ]
        codes = [client.post("/webhooks/twilio", data=form, headers=h).status_code for h in wrong]
        metrics = client.get("/metrics").text
    assert codes == [401, 401, 401, 401]
    assert 'musher_webhook_verifications_failed_total{transport="whatsapp"} 4' in metrics
    no_sid = {k: v for k, v in twilio_form("x").items() if "Sid" not in k or k == "AccountSid"}
    assert deliver(daemon, no_sid).status_code == 400
    assert deliver(daemon, twilio_form("x", sender="whatsapp:nobody")).status_code == 400
    assert not fake_whatsapp.wait(lambda: fake_whatsapp.sent, timeout=1.0)


def test_media_without_text_gets_one_polite_note(
    daemon: DaemonProcess, fake_whatsapp: FakeWhatsApp
) -> None:
    for _ in range(2):
        form = twilio_form("", NumMedia="1", MediaUrl0="https://example.org/a.jpg")
        assert deliver(daemon, form).status_code == 200
    assert fake_whatsapp.wait(lambda: fake_whatsapp.sent)
    assert not fake_whatsapp.wait(lambda: len(fake_whatsapp.sent) > 1, timeout=1.0)
    assert "only read text messages" in fake_whatsapp.texts()[0]


def test_a_rate_limited_send_waits_out_the_window(
    daemon: DaemonProcess, fake_whatsapp: FakeWhatsApp
) -> None:
    fake_whatsapp.fail("twilio", 429, retry_after=1.5, code=20429)
    assert deliver(daemon, twilio_form("hello")).status_code == 200
    assert fake_whatsapp.wait(lambda: fake_whatsapp.sent)
    limited, retried = fake_whatsapp.calls[:2]
    assert (limited.status, retried.status) == (429, 200)
    assert retried.at - limited.at >= 1.5
    assert fake_whatsapp.texts() == ["echo: hello"]


def test_the_public_url_is_what_signatures_cover(
    make_daemon: MakeDaemon, fake_whatsapp: FakeWhatsApp
) -> None:
    config = twilio_config(fake_whatsapp) + f'public_url = "{PUBLIC_URL}"\n'
    daemon = make_daemon(extra=config).start()
    assert deliver(daemon, twilio_form("local url")).status_code == 401
    assert deliver(daemon, twilio_form("behind a proxy"), url=PUBLIC_URL).status_code == 200
    assert fake_whatsapp.wait(lambda: fake_whatsapp.sent)
    assert fake_whatsapp.texts() == ["echo: behind a proxy"]


def test_senders_outside_allowed_numbers_are_dropped(
    make_daemon: MakeDaemon, fake_whatsapp: FakeWhatsApp
) -> None:
    config = twilio_config(fake_whatsapp, 'allowed_numbers = ["+447700900123"]')
    daemon = make_daemon(extra=config).start()
    assert deliver(daemon, twilio_form("stranger")).status_code == 200
    assert (
        deliver(daemon, twilio_form("friend", sender="whatsapp:+447700900123")).status_code == 200
    )
    assert fake_whatsapp.wait(lambda: fake_whatsapp.sent)
    assert not fake_whatsapp.wait(lambda: len(fake_whatsapp.sent) > 1, timeout=1.0)
    assert fake_whatsapp.sent == [("twilio", "whatsapp:+447700900123", "echo: friend")]


def test_twilio_without_its_auth_token_does_not_start(
    make_daemon: MakeDaemon, fake_whatsapp: FakeWhatsApp
) -> None:
    config = "\n".join(
        line for line in twilio_config(fake_whatsapp).splitlines() if "auth_token" not in line
    )
    with pytest.raises(RuntimeError, match="auth_token"):
        make_daemon(extra=config).start()
