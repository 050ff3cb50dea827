"""Slack pieces without a daemon: mrkdwn, payload mapping, the manifest, slow commands."""

from __future__ import annotations

import asyncio
import json
import time
import urllib.parse
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from slack_bolt.request.async_request import AsyncBoltRequest
from slack_bolt.response import BoltResponse

from bot.cli import main
from bot.commands.catalogue import build_registry
from bot.messages import InboundMessage, Reply
from bot.metrics import Metrics
from bot.transport import FeedResult, Mailbox
from config.errors import StoreUnavailable
from config.models import SlackConfig
from tests.fakes.slack_api import BOT_TOKEN, FakeSlack
from tests.fakes.slack_payloads import SECRET, command, event, json_request
from transports.slack.app import SlackTransport
from transports.slack.manifest import aliases, manifest
from transports.slack.mrkdwn import to_mrkdwn
from transports.slack.webhook import Webhook
from transports.slack.wire import Bot, event_message, room_of, split_room


@pytest.mark.parametrize(
    ("markdown", "mrkdwn"),
    [
        ("**bold**, *it*, _it_ and ~~gone~~", "*bold*, _it_, _it_ and ~gone~"),
        ("see [the docs](https://x.org/?a=1&b=2)", "see <https://x.org/?a=1&amp;b=2|the docs>"),
        ("## Next steps\n\n- one\n- two", "*Next steps*\n\n• one\n• two"),
        ("a < b && c > d", "a &lt; b &amp;&amp; c &gt; d"),
        ("keep `**x** <y>` as code", "keep `**x** &lt;y&gt;` as code"),
        ("```python\nif a < b:\n    **no**\n```", "```if a &lt; b:\n    **no**```"),
        ("snake_case and 2*3*4 stay", "snake_case and 2*3*4 stay"),
        ("**bold with *it* inside**", "*bold with _it_ inside*"),
        ("<@U123> <!channel>", "&lt;@U123&gt; &lt;!channel&gt;"),
        ("plain words", "plain words"),
    ],
)
def test_markdown_becomes_mrkdwn(markdown: str, mrkdwn: str) -> None:
    assert to_mrkdwn(markdown) == mrkdwn


BOT = Bot("UBOT", "BBOT")


def test_events_become_messages_one_id_per_message() -> None:
    mention = event_message(event("<@UBOT> hi", ts="1.5"), BOT, ())
    plain = event_message(event("hey <@UBOT> hi", ts="1.5", kind="message"), BOT, ())
    assert mention is not None and plain is not None
    assert mention.event_id == plain.event_id == "C1:1.5"
    assert mention.mentioned and plain.mentioned  # a mention anywhere addresses the bot
    unaddressed = event_message(event("just chatting", kind="message"), BOT, ())
    assert unaddressed is not None and not unaddressed.mentioned
    dm = event_message(event("hi", kind="message", channel="D1", channel_type="im"), BOT, ("C1",))
    assert dm is not None and dm.mentioned


def test_threads_are_their_own_rooms() -> None:
    reply = event_message(event("<@UBOT> x", ts="2.0", thread_ts="1.0"), BOT, ())
    root = event_message(event("<@UBOT> x", ts="1.0", thread_ts="1.0"), BOT, ())
    assert reply is not None and reply.room == "C1/1.0"
    assert root is not None and root.room == "C1"
    assert split_room(room_of("C1", "2.0", "1.0")) == ("C1", "1.0")
    assert split_room("C1") == ("C1", None)


@pytest.mark.parametrize(
    "changes",
    [
        {"subtype": "message_changed"},
        {"subtype": "channel_join"},
        {"bot_id": "B9"},
        {"user": "UBOT"},
        {"channel": "C9"},
        {"ts": None},
        {"type": "reaction_added"},
    ],
)
def test_events_that_are_not_messages_to_answer(changes: dict[str, object]) -> None:
    body = event("<@UBOT> hi")
    body["event"].update(changes)
    assert event_message(body, BOT, ("C1",)) is None


def test_the_manifest_lists_every_command_as_an_alias() -> None:
    registry = build_registry()
    found = aliases(registry, "/musher")
    assert found["/musher-status"] == "status"
    assert found["/musher-timer-cancel"] == "timer cancel"
    assert found["/musher-all-status"] == "all_status"
    assert len(found) == len(registry.commands())

    socket = manifest(SlackConfig(), registry, None)
    commands = socket["features"]["slash_commands"]
    assert [c["command"] for c in commands] == ["/musher", *found]
    assert all("url" not in c for c in commands)
    assert socket["settings"]["socket_mode_enabled"] is True
    scopes = set(socket["oauth_config"]["scopes"]["bot"])
    assert {"app_mentions:read", "chat:write", "commands", "channels:history"} <= scopes
    assert "message.im" in socket["settings"]["event_subscriptions"]["bot_events"]
    show = next(c for c in commands if c["command"] == "/musher-show")
    assert show["usage_hint"] == "N"


def test_musher_slack_manifest_prints_the_http_mode_manifest(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "bot.toml"
    config.write_text('[transports.slack]\nmode = "http"\ncommand = "/pm"\n')
    assert main(["slack-manifest", "--config", str(config)]) == 2
    assert "--url" in capsys.readouterr().err
    assert main(["slack-manifest", "--config", str(config), "--url", "https://m.example/"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["settings"]["socket_mode_enabled"] is False
    url = "https://m.example/webhooks/slack"
    assert printed["settings"]["event_subscriptions"]["request_url"] == url
    commands = printed["features"]["slash_commands"]
    assert commands[0]["command"] == "/pm" and commands[1]["command"].startswith("/pm-")
    assert {c["url"] for c in commands} == {url}


class SlowCommands:
    """A sink that acks at once, as ingress does, and acts afterwards: after ``delay`` it
    sends the command's reply texts (none: free text) and settles the message's mailbox."""

    def __init__(self, delay: float, texts: list[str]) -> None:
        self.delay = delay
        self.texts = texts
        self.transport: SlackTransport | None = None
        self.acting: set[asyncio.Task[None]] = set()

    async def feed(self, msg: InboundMessage) -> FeedResult:
        task = asyncio.create_task(self._act(msg), name="act")
        self.acting.add(task)
        task.add_done_callback(self.acting.discard)
        return FeedResult.ACCEPTED

    async def _act(self, msg: InboundMessage) -> None:
        await asyncio.sleep(self.delay)
        assert self.transport is not None
        for i, text in enumerate(self.texts):
            reply = Reply(text, ephemeral=True, key=f"k.{i}", reply_to=msg.reply_to)
            await self.transport.send(msg.session, reply)
        assert isinstance(msg.reply_to, Mailbox)
        msg.reply_to.settle()


async def run_command(slack: FakeSlack, sink: SlowCommands, name: str) -> dict[str, object]:
    config = SlackConfig.model_validate(
        {
            "enabled": True,
            "mode": "http",
            "bot_token": BOT_TOKEN,
            "signing_secret": SECRET,
            "api_base_url": slack.api_url,
        }
    )
    transport = SlackTransport(config, Metrics(), 10_000, {}, ack_budget_s=0.2)
    sink.transport = transport
    await transport.start(sink)
    try:
        form = urllib.parse.urlencode(command("status", slack.response_url(name)))
        request = AsyncBoltRequest(
            body=form, headers={"content-type": "application/x-www-form-urlencoded"}
        )
        response = await transport.bolt.async_dispatch(request)
        assert response.status == 200
        ack: dict[str, object] = json.loads(response.body)
        if sink.texts:
            await asyncio.to_thread(slack.wait, lambda: slack.responses(name), 10)
        await asyncio.gather(*sink.acting)
    finally:
        await transport.aclose()
    return ack


async def test_a_slow_command_is_acked_at_once_and_answered_through_response_url() -> None:
    with FakeSlack() as slack:
        ack = await run_command(slack, SlowCommands(1.0, ["**done**"]), "slow")
        assert ack == {"text": "Working on it…", "response_type": "ephemeral"}
        assert slack.responses("slow") == [{"response_type": "ephemeral", "text": "*done*"}]
        assert slack.posted == []


async def test_a_quick_command_reply_is_the_ack_itself() -> None:
    with FakeSlack() as slack:
        ack = await run_command(slack, SlowCommands(0.0, ["**done**"]), "quick")
        assert ack == {"text": "*done*", "response_type": "ephemeral"}
        assert slack.responses("quick") == [] and slack.posted == []


async def test_free_text_through_the_command_is_acked_in_channel() -> None:
    with FakeSlack() as slack:
        ack = await run_command(slack, SlowCommands(0.0, []), "text")
        assert ack == {"response_type": "in_channel"}
        assert slack.responses("text") == []


async def test_a_long_command_reply_continues_through_response_url() -> None:
    with FakeSlack() as slack:
        ack = await run_command(slack, SlowCommands(0.0, ["part one", "part two"]), "long")
        assert ack == {"text": "part one", "response_type": "ephemeral"}
        assert slack.responses("long") == [{"response_type": "ephemeral", "text": "part two"}]


async def test_a_verified_event_is_journalled_before_its_200_and_a_store_failure_is_503() -> None:
    handed: list[str] = []
    failing = False

    async def on_event(body: dict[str, object]) -> None:
        if failing:
            raise StoreUnavailable("the disk is full")
        handed.append(str(body["event_id"]))

    async def bolt(request: AsyncBoltRequest) -> BoltResponse:
        raise AssertionError("an event_callback must not go through Bolt")

    webhook = Webhook(SECRET, Metrics(), 1 << 20, time.time)
    webhook.dispatch, webhook.on_event = bolt, on_event
    app = web.Application()
    webhook.mount(app)
    async with TestClient(TestServer(app)) as client:
        raw, headers = json_request(event("<@UBOT> hi", ts="1.5"))
        ok = await client.post("/webhooks/slack", data=raw, headers=headers)
        assert ok.status == 200 and len(handed) == 1
        failing = True
        raw, headers = json_request(event("<@UBOT> again", ts="2.5"))
        refused = await client.post("/webhooks/slack", data=raw, headers=headers)
        assert refused.status == 503  # not journalled: Slack delivers it again
        assert "cannot store" in (await refused.json())["error"]
        assert len(handed) == 1
