"""The one Retry-After reader: every form a platform sends, its default and its cap."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import httpx
from multidict import CIMultiDict

from bot.ratewindow import RETRY_AFTER_CAP_S, RETRY_AFTER_DEFAULT_S, retry_after


def test_seconds_milliseconds_and_http_dates_are_read() -> None:
    now = datetime(2030, 1, 1, tzinfo=UTC)
    date = format_datetime(now + timedelta(seconds=30), usegmt=True)
    assert retry_after(httpx.Headers({"Retry-After": "2"})) == 2.0
    assert retry_after(httpx.Headers({"retry-after-ms": "1500"})) == 1.5
    assert retry_after(httpx.Headers({"Retry-After": date}), now=now.timestamp) == 30.0
    assert retry_after(CIMultiDict({"RETRY-AFTER": "7"})) == 7.0  # aiohttp's headers


def test_milliseconds_win_and_a_json_body_field_reads_too() -> None:
    assert retry_after({"Retry-After": "9", "Retry-After-Ms": "250"}) == 0.25
    assert retry_after({"retry-after-ms": 1200}) == 1.2  # Matrix's retry_after_ms, as a number


def test_absent_or_unreadable_gives_the_default() -> None:
    for fields in ({}, {"Retry-After": "soon"}, {"Retry-After": "nan"}, {"retry-after-ms": None}):
        assert retry_after(fields) == RETRY_AFTER_DEFAULT_S
        assert retry_after(fields, 5.0) == 5.0
        assert retry_after(fields, None) is None  # the caller backs off its own way


def test_the_wait_is_never_negative_nor_longer_than_the_cap() -> None:
    assert retry_after({"Retry-After": "-3"}) == 0.0
    assert retry_after({"Retry-After": "86400"}) == RETRY_AFTER_CAP_S
    assert retry_after({"Retry-After": "inf"}) == RETRY_AFTER_DEFAULT_S
    past = format_datetime(datetime(2000, 1, 1, tzinfo=UTC), usegmt=True)
    assert retry_after({"Retry-After": past}) == 0.0
