"""Slack in Socket Mode: the daemon subprocess connects to a fake Socket Mode websocket
(``apps.connections.open`` on the fake Web API) and acks envelopes over it."""

from __future__ import annotations

from collections.abc import Callable

from tests.fakes.slack_api import APP_TOKEN, BOT_TOKEN, FakeSlack
from tests.fakes.slack_payloads import command, envelope, event
from tests.integration.daemon import DaemonProcess

MakeDaemon = Callable[..., DaemonProcess]


def test_socket_mode_commands_and_mentions(make_daemon: MakeDaemon) -> None:
    with FakeSlack() as slack:
        daemon = make_daemon(
            extra=f"""
[transports.slack]
enabled = true
mode = "socket"
bot_token = "{BOT_TOKEN}"
app_token = "{APP_TOKEN}"
api_base_url = "{slack.api_url}"
"""
        ).start()
        assert slack.connected == 1
        opened = slack.calls_to("apps.connections.open")
        assert len(opened) == 1

        cmd = envelope(command("show 42", slack.response_url("s1")), kind="slash_commands")
        slack.push(cmd)
        assert slack.wait(lambda: any(a["envelope_id"] == cmd["envelope_id"] for a in slack.acks))
        ack = next(a for a in slack.acks if a["envelope_id"] == cmd["envelope_id"])
        assert ack["payload"]["response_type"] == "ephemeral"
        assert ack["payload"]["text"].startswith("No item #42 in ")

        mention = envelope(event("<@UBOT> over the socket"))
        slack.push(mention)
        slack.push({**mention, "envelope_id": "env-again", "retry_attempt": 1})
        assert slack.wait(lambda: slack.posted)
        assert slack.wait(lambda: {a["envelope_id"] for a in slack.acks} >= {"env-again"})
        assert not slack.wait(lambda: len(slack.posted) > 1, timeout=1.0)
        assert [(p.channel, p.text) for p in slack.posted] == [("C1", "echo: over the socket")]

        assert daemon.terminate() == 0
        assert slack.wait(lambda: slack.connected == 0, timeout=5)
