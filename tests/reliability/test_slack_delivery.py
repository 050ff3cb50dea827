"""R8 (retry storm, fast form) and R11 (outbound 429/5xx) for Slack, against the daemon
as a subprocess in HTTP mode with a fake Slack Web API."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import httpx

from tests.fakes.slack_api import FakeSlack
from tests.fakes.slack_payloads import event, json_request, slack_config
from tests.integration.daemon import DaemonProcess

MakeDaemon = Callable[..., DaemonProcess]


def deliver(daemon: DaemonProcess, raw: bytes, headers: dict[str, str]) -> int:
    with httpx.Client(base_url=daemon.url, timeout=10) as client:
        return client.post("/webhooks/slack", content=raw, headers=headers).status_code


def test_r8_redeliveries_during_a_slow_turn_never_make_a_second_turn(
    make_daemon: MakeDaemon, slack: FakeSlack
) -> None:
    daemon = make_daemon(delay=2.0, window_ms=200, extra=slack_config(slack)).start()
    events = [
        event(f"<@UBOT> question-{i}", channel=f"C{i % 4}", ts=f"1800000{i:03d}.000100")
        for i in range(16)
    ]
    with ThreadPoolExecutor(max_workers=8) as pool:
        statuses = list(pool.map(lambda e: deliver(daemon, *json_request(e)), events))
        # The LLM is busy now; Slack redelivers every event three times, also as `message`.
        redeliveries = [json_request(e, retry=n) for n in (1, 2, 3) for e in events]
        plain = [{**e, "event_id": e["event_id"] + "m"} for e in events]
        for p in plain:
            p["event"] = {**p["event"], "type": "message", "channel_type": "channel"}
        redeliveries += [json_request(p, retry=n) for n in (0, 1) for p in plain]
        statuses += list(pool.map(lambda r: deliver(daemon, *r), redeliveries))
    assert statuses == [200] * len(statuses)  # non-2xx to valid requests = 0

    def answered() -> Counter[str]:
        seen: Counter[str] = Counter()
        for p in slack.posted:
            seen.update(re.findall(r"question-\d+", p.text))
        return seen

    assert slack.wait(lambda: len(answered()) == len(events), timeout=40)
    assert not slack.wait(lambda: sum(answered().values()) > len(events), timeout=2.5)
    assert answered() == Counter({f"question-{i}": 1 for i in range(16)})  # turns per event = 1


def test_r11_rate_limits_and_committed_5xx_never_duplicate_a_reply(
    make_daemon: MakeDaemon, slack: FakeSlack
) -> None:
    daemon = make_daemon(extra=slack_config(slack)).start()
    slack.fail("chat.postMessage", 429, retry_after=2)
    slack.fail("chat.postMessage", 502, commit=True)
    assert deliver(daemon, *json_request(event("<@UBOT> first"))) == 200
    assert slack.wait(lambda: slack.calls_to("conversations.history"))

    posts = slack.calls_to("chat.postMessage")
    limited = posts[0]
    assert limited.status == 429
    outbound = [c for c in slack.calls if c.method != "auth.test"]
    inside = [c for c in outbound if limited.at < c.at < limited.at + 2.0]
    assert inside == []  # requests inside a Retry-After window = 0
    assert [(p.channel, p.text) for p in slack.posted] == [("C1", "echo: first")]

    # Uncommitted 502 in a thread: checked with conversations.replies, then posted again.
    slack.fail("chat.postMessage", 502)
    thread = event("<@UBOT> second", thread_ts="1800000000.000100")
    assert deliver(daemon, *json_request(thread)) == 200
    assert slack.wait(lambda: len(slack.posted) >= 2)
    assert slack.calls_to("conversations.replies")
    assert not slack.wait(lambda: len(slack.posted) > 2, timeout=1.5)
    second = slack.posted[1]
    assert (second.text, second.thread_ts) == ("echo: second", "1800000000.000100")

    with daemon.client() as client:
        metrics = client.get("/metrics").text
    assert 'musher_sends_retried_total{transport="slack"} 3' in metrics
    assert "musher_sends_failed_total{" not in metrics  # duplicate visible messages = 0
