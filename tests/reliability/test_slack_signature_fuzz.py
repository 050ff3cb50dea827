"""R9 for Slack: hypothesis over ``POST /webhooks/slack`` signature headers and bodies.

The real route and the real Bolt app run in-process (in a background loop, behind a real
TCP socket) with a recording sink; the clock is pinned so the five-minute window is exact.
Figures: 5xx = 0; forged or stale requests accepted (answered 2xx or handed to ingress) = 0;
correctly signed fresh requests are accepted.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from aiohttp import web
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot.messages import InboundMessage
from bot.metrics import Metrics
from bot.transport import FeedResult
from config.models import SlackConfig
from pipeline.text_rules import scrub
from tests.fakes.runner import close_runner
from tests.fakes.slack_api import BOT_TOKEN, FakeSlack
from tests.fakes.slack_payloads import SECRET, event, sign
from transports.slack.app import SlackTransport

NOW = 1_800_000_000
FUZZ = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


class RecordingSink:
    def __init__(self) -> None:
        self.messages: list[InboundMessage] = []

    async def feed(self, msg: InboundMessage) -> FeedResult:
        self.messages.append(msg)
        return FeedResult.ACCEPTED


class Served:
    """The transport's route on 127.0.0.1, run by a loop in a background thread."""

    def __init__(self, slack: FakeSlack) -> None:
        self.sink = RecordingSink()
        self.metrics = Metrics()
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="slack-route")
        self.slack = slack
        self.url = ""

    def __enter__(self) -> Served:
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self.loop).result(10)
        return self

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self._stop(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()

    async def _start(self) -> None:
        config = SlackConfig.model_validate(
            {
                "enabled": True,
                "mode": "http",
                "bot_token": BOT_TOKEN,
                "signing_secret": SECRET,
                "api_base_url": self.slack.api_url,
            }
        )
        self.transport = SlackTransport(config, self.metrics, 4096, {}, clock=lambda: NOW)
        app = web.Application(client_max_size=4096)
        self.transport.mount(app)
        await self.transport.start(self.sink)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        assert site._server is not None
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}/webhooks/slack"

    async def _stop(self) -> None:
        await self.transport.aclose()
        await close_runner(self.runner)


@pytest.fixture(scope="module")
def served() -> Iterator[tuple[Served, httpx.Client]]:
    with FakeSlack() as slack, Served(slack) as route, httpx.Client(timeout=10) as client:
        yield route, client


def header_bytes(raw: bytes) -> bytes:
    """What HTTP lets a header value hold: visible ASCII, spaces inside, and obs-text."""
    return bytes(b for b in raw if b == 0x20 or 0x21 <= b <= 0x7E or b >= 0x80).strip()


timestamps = st.one_of(
    st.integers(-(10**30), 10**30).map(str),
    st.integers(301, 10**11).flatmap(lambda d: st.sampled_from([str(NOW - d), str(NOW + d)])),
    st.sampled_from(["", "1e9", "0x6b49d200", "１８００００００００", "+1800000000", "nan", " 18"]),
    st.text(max_size=24),
).map(lambda s: s.encode("utf-8", "surrogatepass"))
signatures = st.one_of(
    st.binary(max_size=90),
    st.text(alphabet="0123456789abcdef", max_size=80).map(lambda h: f"v0={h}".encode()),
    st.text(max_size=80).map(lambda s: s.encode("utf-8", "surrogatepass")),
)
bodies = st.one_of(
    st.binary(max_size=600),
    st.text(max_size=200).map(lambda t: json.dumps(event(t)).encode()),
)


def post(client: httpx.Client, url: str, body: bytes, headers: dict[str, Any]) -> httpx.Response:
    return client.post(url, content=body, headers=headers)


@FUZZ
@given(ts=timestamps, sig=signatures, body=bodies)
def test_forged_headers_are_refused_without_a_5xx(
    served: tuple[Served, httpx.Client], ts: bytes, sig: bytes, body: bytes
) -> None:
    route, client = served
    before = len(route.sink.messages)
    headers = {
        "Content-Type": "application/json",
        "X-Slack-Request-Timestamp": header_bytes(ts),
        "X-Slack-Signature": header_bytes(sig),
    }
    response = post(client, route.url, body, headers)
    assert response.status_code in (401, 413), response.text
    assert len(route.sink.messages) == before


@FUZZ
@given(
    skew=st.one_of(st.integers(301, 10**9), st.integers(-(10**9), -301)),
    text=st.text(max_size=100),
)
def test_correct_but_stale_signatures_are_refused(
    served: tuple[Served, httpx.Client], skew: int, text: str
) -> None:
    route, client = served
    before = len(route.sink.messages)
    body = json.dumps(event(f"<@UBOT> {text}")).encode()
    headers = {"Content-Type": "application/json", **sign(body, ts=NOW + skew)}
    assert post(client, route.url, body, headers).status_code == 401
    assert len(route.sink.messages) == before


@FUZZ
@given(cut=st.integers(0, 70), extra=st.text(alphabet="0123456789abcdefABCDEF", max_size=5))
def test_signatures_of_the_wrong_length_are_refused(
    served: tuple[Served, httpx.Client], cut: int, extra: str
) -> None:
    route, client = served
    body = json.dumps(event("<@UBOT> length")).encode()
    headers = {"Content-Type": "application/json", **sign(body, ts=NOW)}
    good = headers["X-Slack-Signature"]
    forged = good[:cut] + extra
    if forged == good:
        return
    headers["X-Slack-Signature"] = forged
    assert post(client, route.url, body, headers).status_code == 401


@FUZZ
@given(
    skew=st.integers(-300, 300),
    text=st.text(max_size=100),
    junk=st.binary(max_size=300),
)
def test_fresh_correct_signatures_are_accepted(
    served: tuple[Served, httpx.Client], skew: int, text: str, junk: bytes
) -> None:
    route, client = served
    payload = event(f"<@UBOT> {text}", event_id=None)
    body = json.dumps(payload).encode()
    headers = {"Content-Type": "application/json", **sign(body, ts=NOW + skew)}
    assert post(client, route.url, body, headers).status_code == 200
    assert route.sink.messages[-1].event_id == f"C1:{payload['event']['ts']}"
    # control, bidi-override and surrogate characters are removed, never stored
    assert route.sink.messages[-1].text == scrub(payload["event"]["text"])
    # Signed junk (non-UTF-8, not JSON, not a form) is refused as a client error, never a 5xx.
    signed_junk = {"Content-Type": "application/json", **sign(junk, ts=NOW + skew)}
    assert 200 <= post(client, route.url, junk, signed_junk).status_code < 500


def test_the_rejections_are_counted(served: tuple[Served, httpx.Client]) -> None:
    route, client = served
    before = route.metrics.webhook_rejected.values["slack"]
    body = b"{}"
    assert post(client, route.url, body, sign(body, secret="nope", ts=NOW)).status_code == 401
    assert route.metrics.webhook_rejected.values["slack"] == before + 1
