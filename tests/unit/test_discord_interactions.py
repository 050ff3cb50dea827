"""Application commands: typed options ↔ chat lines, and the 3-second answer-or-defer flow
over the real ``POST /webhooks/discord`` route (in-process, real socket and signatures)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import discord
import httpx
import pytest
from nacl.signing import SigningKey

from bot.cli import main
from bot.commands.catalogue import build_registry
from bot.messages import InboundMessage
from tests.fakes.discord_api import FakeDiscord
from tests.fakes.discord_payloads import signed
from tests.reliability.webhook_routes import Route
from transports.discord.commands import application_commands, line_of
from transports.discord.interactions import InteractionReply, Interactions
from transports.discord.verify import verify_key
from transports.discord.webhook import Endpoint
from transports.discord.wire import strip_mentions

KEY = SigningKey.generate()
FAKE = FakeDiscord()  # builds payloads only


class SlowCommands(Route):
    """The endpoint with an ingress stand-in that answers commands after ``delay`` s."""

    path = "/webhooks/discord"
    delay = 0.0

    def mount(self) -> None:
        self.sink.answer = self.answer
        self.followups: list[tuple[str, bool]] = []
        endpoint = Endpoint(
            verify_key(KEY.verify_key.encode().hex()), self.metrics, 4096, time.time, self.track
        )
        endpoint.interactions = Interactions(
            build_registry(), self.hand_in, ["1", FAKE.channel_id], 0.3
        )
        endpoint.follow_up = lambda it: self.follow_up
        endpoint.mount(self.app)

    async def follow_up(self, text: str, ephemeral: bool) -> None:
        self.followups.append((text, ephemeral))

    def answer(self, msg: InboundMessage) -> None:
        async def later() -> None:
            await asyncio.sleep(self.delay)
            assert isinstance(msg.reply_to, InteractionReply)
            await msg.reply_to.deliver(f"ran: {msg.text}")
            await msg.reply_to.deliver("and a second part")

        self.track(asyncio.ensure_future(later()))


@pytest.fixture
def route() -> Iterator[SlowCommands]:
    with SlowCommands() as served:
        yield served


def post(route: SlowCommands, payload: dict[str, Any]) -> dict[str, Any]:
    body = json.dumps(payload).encode()
    response = httpx.post(route.endpoint, content=body, headers=signed(KEY, body))
    assert response.status_code == 200
    answer: dict[str, Any] = response.json()
    return answer


def test_a_quick_command_is_answered_in_the_response(route: SlowCommands) -> None:
    answer = post(route, FAKE.interaction("show", [{"name": "item", "type": 4, "value": 3}]))
    assert answer == {
        "type": 4,
        "data": {"content": "ran: show 3", "allowed_mentions": {"parse": []}, "flags": 64},
    }
    assert route.wait(lambda: route.followups)
    assert route.followups == [("and a second part", True)]


def test_a_slow_command_is_deferred_then_followed_up(route: SlowCommands) -> None:
    route.delay = 1.0
    answer = post(
        route,
        FAKE.interaction("move", [{"name": "item", "value": 2}, {"name": "stage", "value": "qa"}]),
    )
    assert answer == {"type": 5}  # a change: public "thinking…"
    assert route.wait(lambda: len(route.followups) == 2)
    assert route.followups == [("ran: move 2 qa", False), ("and a second part", False)]


def test_other_channels_and_unknown_commands_get_a_clear_ephemeral_answer(
    route: SlowCommands,
) -> None:
    elsewhere = post(route, FAKE.interaction("status", channel_id="12345"))
    assert elsewhere["data"]["content"] == "musher is not set up for this channel."
    unknown = post(route, FAKE.interaction("frobnicate"))
    assert "not one musher knows" in unknown["data"]["content"]
    assert unknown["data"]["flags"] == 64
    assert route.sink.messages == []


def test_every_registry_command_has_an_application_command() -> None:
    registry = build_registry()
    names = {c["name"] for c in application_commands(registry)}
    assert len(names) == len(registry.commands()) + 1  # plus /musher
    for command in application_commands(registry):
        required = [o["required"] for o in command["options"]]
        assert required == sorted(required, reverse=True)  # Discord: required options first
        assert 1 <= len(command["description"]) <= 100


@pytest.mark.parametrize(
    ("name", "options", "line"),
    [
        ("move", {"item": 12, "stage": "qa"}, "move 12 qa"),
        ("supersede", {"item": 3, "by": 4}, "supersede 3 by 4"),
        (
            "new",
            {"kind": "bug", "title": "Don't crash", "depends": "3,4"},
            "new bug Don't crash --depends 3,4",
        ),
        ("block", {"item": 2, "reason": "waiting on ops"}, "block 2 waiting on ops"),
        ("timer-cancel", {"id": "a b"}, "timer cancel 'a b'"),
        ("status", {}, "status"),
        ("musher", {"line": "  ask me  "}, "ask me"),
        ("musher", {}, "help"),
        ("nope", {}, None),
    ],
)
def test_options_become_the_chat_line(name: str, options: dict[str, Any], line: str | None) -> None:
    given = [{"name": k, "value": v} for k, v in options.items()]
    assert line_of(build_registry(), name, given) == line


def test_only_the_leading_bot_mentions_are_removed() -> None:
    assert strip_mentions("<@42> <@&7>: status", 42, [7]) == "status"
    assert strip_mentions("<@!42>, hi <@42>", 42) == "hi <@42>"
    assert strip_mentions("<@43> hi", 42) == "<@43> hi"


def test_musher_discord_invite_prints_the_oauth_url(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "bot.toml"
    config.write_text("")
    assert main(["discord-invite", "--config", str(config)]) == 2
    assert "application_id" in capsys.readouterr().err
    config.write_text("[transports.discord]\napplication_id = 123456789012345678\n")
    assert main(["discord-invite", "--config", str(config)]) == 0
    url = urlsplit(capsys.readouterr().out.strip())
    query = parse_qs(url.query)
    assert (url.netloc, url.path) == ("discord.com", "/oauth2/authorize")
    assert query["client_id"] == ["123456789012345678"]
    assert query["scope"] == ["bot applications.commands"]
    wanted = discord.Permissions(int(query["permissions"][0]))
    assert wanted.view_channel and wanted.send_messages and wanted.send_messages_in_threads
    assert not (wanted.administrator or wanted.manage_messages or wanted.mention_everyone)
