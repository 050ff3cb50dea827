"""Slack in HTTP mode: the daemon as a subprocess serves a real Bolt ``AsyncApp`` at
``POST /webhooks/slack``; signed requests go in, a fake Slack Web API and ``response_url``
server take what comes out."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from tests.fakes.slack_api import BOT_TOKEN, FakeSlack
from tests.fakes.slack_payloads import (
    SECRET,
    command,
    event,
    form_request,
    json_request,
    sign,
    slack_config,
)
from tests.integration.daemon import DaemonProcess

MakeDaemon = Callable[..., DaemonProcess]


@pytest.fixture
def daemon(make_daemon: MakeDaemon, slack: FakeSlack) -> DaemonProcess:
    return make_daemon(extra=slack_config(slack, 'admins = ["U1"]')).start()


def post(daemon: DaemonProcess, raw: bytes, headers: dict[str, str]) -> httpx.Response:
    with daemon.client() as client:
        return client.post("/webhooks/slack", content=raw, headers=headers)


def slash(daemon: DaemonProcess, slack: FakeSlack, text: str, **kw: Any) -> httpx.Response:
    return post(daemon, *form_request(command(text, slack.response_url("r1"), **kw)))


def test_a_signed_slash_command_is_answered_ephemerally(
    daemon: DaemonProcess, slack: FakeSlack
) -> None:
    response = slash(daemon, slack, "show 99")
    assert response.status_code == 200
    body = response.json()
    assert body["response_type"] == "ephemeral"
    assert body["text"].startswith("No item #99 in ")

    alias = slash(daemon, slack, "99", name="/musher-show")
    assert alias.json()["text"] == body["text"]
    board = slash(daemon, slack, "", name="/musher-status")
    assert board.json()["response_type"] == "ephemeral" and board.json()["text"]
    assert slack.posted == []  # nothing went to the channel


def test_an_app_mention_becomes_a_turn_posted_to_the_channel(
    daemon: DaemonProcess, slack: FakeSlack
) -> None:
    mention = event("<@UBOT> hello there", ts="1800000001.000100")
    assert post(daemon, *json_request(mention)).status_code == 200
    # The same message also arrives as a plain channel message (another event id).
    same = event("<@UBOT> hello there", ts="1800000001.000100", kind="message")
    same["event"]["channel_type"] = "channel"
    assert post(daemon, *json_request(same)).status_code == 200

    assert slack.wait(lambda: slack.posted)
    first = slack.posted[0]
    assert (first.channel, first.text, first.thread_ts) == ("C1", "echo: hello there", None)
    assert first.metadata is not None and first.metadata["event_type"] == "musher_reply"

    in_thread = event("<@UBOT> and *this*?", thread_ts="1800000001.000100")
    assert post(daemon, *json_request(in_thread)).status_code == 200
    assert slack.wait(lambda: len(slack.posted) >= 2)
    reply = slack.posted[1]
    assert (reply.channel, reply.thread_ts) == ("C1", "1800000001.000100")
    assert reply.text == "echo: and _this_?"  # markdown italics → mrkdwn
    assert not slack.wait(lambda: len(slack.posted) > 2, timeout=1.0)  # no second turn


def test_free_text_through_the_command_is_answered_in_the_channel(
    daemon: DaemonProcess, slack: FakeSlack
) -> None:
    response = slash(daemon, slack, "what is going on?")
    assert response.json() == {"response_type": "in_channel"}
    assert slack.wait(lambda: slack.posted)
    assert [(p.channel, p.text) for p in slack.posted] == [("C1", "echo: what is going on?")]


def test_unsigned_stale_and_forged_requests_are_refused(
    daemon: DaemonProcess, slack: FakeSlack
) -> None:
    raw, headers = json_request(event("<@UBOT> forged"))
    cases = [
        {**headers, **sign(raw, secret="wrong")},
        {**headers, **sign(raw, ts=int(headers["X-Slack-Request-Timestamp"]) - 301)},
        {"Content-Type": "application/json"},
        {**headers, "X-Slack-Request-Timestamp": "soon"},
    ]
    for case in cases:
        assert post(daemon, raw, case).status_code == 401
    with daemon.client() as client:
        metrics = client.get("/metrics").text
    assert 'musher_webhook_verifications_failed_total{transport="slack"} 4' in metrics
    challenge = json.dumps({"type": "url_verification", "challenge": "c-123", "token": "t"})
    ok = post(
        daemon, challenge.encode(), {"Content-Type": "application/json", **sign(challenge.encode())}
    )
    assert ok.json() == {"challenge": "c-123"}
    assert slack.posted == []


def test_strangers_get_a_clear_ephemeral_refusal(make_daemon: MakeDaemon, slack: FakeSlack) -> None:
    daemon = make_daemon(extra=slack_config(slack, 'allowed_users = ["U1"]')).start()
    response = slash(daemon, slack, "status", user="U2")
    assert response.json()["response_type"] == "ephemeral"
    assert "not on musher's list" in response.json()["text"]
    mention = event("<@UBOT> hi", user="U2")
    assert post(daemon, *json_request(mention)).status_code == 200
    assert not slack.wait(lambda: slack.posted, timeout=1.0)


def test_a_channel_outside_the_configured_ones_is_ignored(
    make_daemon: MakeDaemon, slack: FakeSlack
) -> None:
    daemon = make_daemon(extra=slack_config(slack, 'channels = ["C1"]')).start()
    assert post(daemon, *json_request(event("<@UBOT> elsewhere", channel="C9"))).is_success
    dm = event("hi in private", channel="D7", kind="message", channel_type="im")
    assert post(daemon, *json_request(dm)).is_success
    assert slack.wait(lambda: slack.posted)
    assert not slack.wait(lambda: len(slack.posted) > 1, timeout=1.0)
    assert [(p.channel, p.text) for p in slack.posted] == [("D7", "echo: hi in private")]
    refused = slash(daemon, slack, "status", channel="C9")
    assert refused.json()["text"] == "musher is not set up for this channel."


def test_http_mode_without_a_signing_secret_does_not_start(
    make_daemon: MakeDaemon, slack: FakeSlack
) -> None:
    config = slack_config(slack).replace(f'signing_secret = "{SECRET}"\n', "")
    daemon = make_daemon(extra=config)
    with pytest.raises(RuntimeError, match="signing_secret"):
        daemon.start()


def test_a_refused_bot_token_stops_the_daemon_with_the_reason(
    make_daemon: MakeDaemon, slack: FakeSlack
) -> None:
    daemon = make_daemon(extra=slack_config(slack).replace(BOT_TOKEN, "xoxb-revoked"))
    with pytest.raises(RuntimeError, match=r"Slack refused bot_token \(invalid_auth\)"):
        daemon.start()
    assert "xoxb-revoked" not in daemon.log_text()
