"""Matrix sends: one transaction id per chunk, retried on 5xx and network errors only."""

from __future__ import annotations

import time
from typing import Any

import aiohttp
import pytest
from nio import RoomSendError, RoomSendResponse

from bot.metrics import Metrics
from bot.ratewindow import RateWindow
from config.errors import PermanentError, TransientError
from transports.matrix import send
from transports.matrix.send import notice, send_event, transaction_id


class _Status:
    def __init__(self, status: int) -> None:
        self.status = status


def error(status: int, errcode: str | None = None, **extra: Any) -> RoomSendError:
    body = {"errcode": errcode, "error": "nope", **extra} if errcode else {}
    resp = RoomSendError.from_dict(body, "!r:x")
    resp.transport_response = _Status(status)
    return resp


class FakeClient:
    """Answers ``room_send`` from a script and records the transaction ids it was given."""

    def __init__(self, *script: Any) -> None:
        self.script = list(script)
        self.tx_ids: list[str] = []

    async def room_send(self, room_id: str, kind: str, content: Any, **kw: Any) -> Any:
        self.tx_ids.append(kw["tx_id"])
        step = self.script.pop(0)
        if isinstance(step, Exception):
            raise step
        return step


@pytest.fixture(autouse=True)
def quick(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(send, "FIRST_DELAY_S", 0.001)


async def no_renew() -> bool:
    return False


def retried(metrics: Metrics) -> float:
    return metrics.sends_retried.values.get("matrix", 0.0)


async def test_5xx_and_network_errors_are_retried_with_the_same_transaction() -> None:
    ok = RoomSendResponse.from_dict({"event_id": "$e"}, "!r:x")
    client = FakeClient(error(502), aiohttp.ClientConnectionError("reset"), error(503), ok)
    metrics = Metrics()
    event = await send_event(client, "!r:x", notice("hi"), "tx1", metrics, no_renew, RateWindow())
    assert event == "$e"
    assert client.tx_ids == ["tx1"] * 4
    assert retried(metrics) == 3


async def test_a_4xx_is_not_retried() -> None:
    client = FakeClient(error(403, "M_FORBIDDEN"))
    with pytest.raises(PermanentError, match="M_FORBIDDEN"):
        await send_event(client, "!r:x", notice("hi"), "tx", Metrics(), no_renew, RateWindow())
    assert len(client.tx_ids) == 1


async def test_it_gives_up_after_a_bounded_number_of_attempts() -> None:
    client = FakeClient(*[error(500)] * send.ATTEMPTS)
    with pytest.raises(TransientError, match="failed 5 times"):
        await send_event(client, "!r:x", notice("hi"), "tx", Metrics(), no_renew, RateWindow())


async def test_a_429_holds_back_the_next_attempt_for_retry_after() -> None:
    ok = RoomSendResponse.from_dict({"event_id": "$e"}, "!r:x")
    client = FakeClient(error(429, "M_LIMIT_EXCEEDED", retry_after_ms=200), ok)
    window = RateWindow()
    started = time.monotonic()
    await send_event(client, "!r:x", notice("hi"), "tx", Metrics(), no_renew, window)
    assert window.until >= started + 0.2
    assert time.monotonic() >= window.until


async def test_an_unknown_token_logs_in_again_then_retries() -> None:
    ok = RoomSendResponse.from_dict({"event_id": "$e"}, "!r:x")
    client = FakeClient(error(401, "M_UNKNOWN_TOKEN"), ok)
    renewed: list[bool] = []

    async def renew() -> bool:
        renewed.append(True)
        return True

    assert await send_event(client, "!r", notice("x"), "tx", Metrics(), renew, RateWindow()) == "$e"
    assert renewed == [True]


def test_transaction_ids_are_stable_per_key_and_prefix() -> None:
    assert transaction_id("p", "t1.1.0") == transaction_id("p", "t1.1.0")
    assert transaction_id("p", "t1.1.0") != transaction_id("p", "t1.1.1")
    assert transaction_id("p", "t1.1.0") != transaction_id("q", "t1.1.0")


def test_a_notice_keeps_the_plain_text_and_adds_html() -> None:
    assert notice("**hi**") == {
        "msgtype": "m.notice",
        "body": "**hi**",
        "format": "org.matrix.custom.html",
        "formatted_body": "<p><strong>hi</strong></p>",
    }
