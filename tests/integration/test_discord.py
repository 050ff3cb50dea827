"""Discord over a fake gateway and REST API: the daemon as a subprocess runs a real
discord.py client against :class:`~tests.fakes.discord_api.FakeDiscord`."""

from __future__ import annotations

import json
import time
from collections.abc import Callable

import httpx
import pytest
from nacl.signing import SigningKey

from tests.fakes.discord_api import TOKEN, FakeDiscord
from tests.fakes.discord_payloads import signed
from tests.integration.daemon import DaemonProcess

MakeDaemon = Callable[..., DaemonProcess]


def discord_config(fake: FakeDiscord, extra: str = "") -> str:
    return (
        "\n[transports.discord]\nenabled = true\n"
        f'bot_token = "{TOKEN}"\napi_base_url = "{fake.api_url}"\n'
        f'gateway_url = "{fake.gateway_url}"\nguilds = ["{fake.guild_id}"]\n{extra}\n'
    )


@pytest.fixture
def daemon(make_daemon: MakeDaemon, fake_discord: FakeDiscord) -> DaemonProcess:
    return make_daemon(extra=discord_config(fake_discord, 'admins = ["1"]')).start()


def mention(fake: FakeDiscord, text: str) -> str:
    return f"<@{fake.app_id}> {text}"


def test_a_mentioned_command_is_answered_once_in_the_channel(
    daemon: DaemonProcess, fake_discord: FakeDiscord
) -> None:
    fake_discord.say(mention(fake_discord, "show 99"))
    assert fake_discord.wait(lambda: fake_discord.sent)
    sent = fake_discord.sent[0]
    assert sent["channel_id"] == fake_discord.channel_id
    assert sent["content"].startswith("No item #99 in ")
    create = fake_discord.calls_to("create_message")[0].body
    assert create["enforce_nonce"] is True and len(create["nonce"]) == 25
    fake_discord.say("status")  # not addressed: ignored
    assert not fake_discord.wait(lambda: len(fake_discord.sent) > 1, timeout=1.0)


def test_free_text_is_one_turn_per_burst_and_threads_are_their_own(
    daemon: DaemonProcess, fake_discord: FakeDiscord
) -> None:
    for text in ("one", "two", "three"):
        fake_discord.say(mention(fake_discord, text))
    fake_discord.say(f"<@&{fake_discord.role_id}> in a thread", fake_discord.thread_id)
    assert fake_discord.wait(lambda: len(fake_discord.sent) >= 2)
    assert not fake_discord.wait(lambda: len(fake_discord.sent) > 2, timeout=1.0)
    assert fake_discord.texts(fake_discord.channel_id) == ["echo: one | two | three"]
    assert fake_discord.texts(fake_discord.thread_id) == ["echo: in a thread"]
    assert fake_discord.calls_to("typing")  # the bot was seen typing


def test_direct_messages_need_no_mention(daemon: DaemonProcess, fake_discord: FakeDiscord) -> None:
    dm = "99999"
    fake_discord.say("hello in private", dm, direct=True)
    assert fake_discord.wait(lambda: fake_discord.sent)
    assert fake_discord.texts(dm) == ["echo: hello in private"]


def test_application_commands_are_synced_and_answered(
    daemon: DaemonProcess, fake_discord: FakeDiscord
) -> None:
    registered = fake_discord.commands[fake_discord.guild_id]
    names = {c["name"] for c in registered}
    assert {"musher", "status", "move", "timer-cancel"} <= names
    move = next(c for c in registered if c["name"] == "move")
    assert [(o["name"], o["type"]) for o in move["options"]] == [("item", 4), ("stage", 3)]

    fake_discord.slash("status")
    assert fake_discord.wait(lambda: fake_discord.callbacks)
    first = fake_discord.callbacks[0]
    assert first["type"] == 4 and first["data"]["flags"] == 64  # read-only: ephemeral

    fake_discord.slash(
        "new", [{"name": "kind", "value": "story"}, {"name": "title", "value": "Login page"}]
    )
    assert fake_discord.wait(lambda: len(fake_discord.callbacks) >= 2)
    created = fake_discord.callbacks[1]
    assert created["type"] == 4 and "flags" not in created["data"]  # a change: public
    assert created["data"]["content"].startswith("Created #1 Login page (story)")

    fake_discord.slash("musher", [{"name": "line", "value": "move 1 coding"}])
    assert fake_discord.wait(lambda: len(fake_discord.callbacks) >= 3)
    assert "backlog → coding" in fake_discord.callbacks[2]["data"]["content"]
    assert fake_discord.sent == []  # command replies went into the interactions


def test_free_text_through_the_command_is_answered_in_the_channel(
    daemon: DaemonProcess, fake_discord: FakeDiscord
) -> None:
    fake_discord.slash("musher", [{"name": "line", "value": "what is up?"}])
    assert fake_discord.wait(lambda: fake_discord.callbacks and fake_discord.sent)
    assert fake_discord.callbacks[0]["data"]["content"] == "> what is up?"
    assert fake_discord.texts() == ["echo: what is up?"]


def test_a_rate_limited_send_waits_out_the_window(
    daemon: DaemonProcess, fake_discord: FakeDiscord
) -> None:
    fake_discord.fail("create_message", 429, retry_after=1.5)
    fake_discord.say(mention(fake_discord, "show 5"))
    assert fake_discord.wait(lambda: fake_discord.sent)
    limited, retried = fake_discord.calls_to("create_message")[:2]
    assert limited.status == 429
    assert retried.at - limited.at >= 1.5  # nothing inside the Retry-After window
    assert len(fake_discord.sent) == 1


def test_a_send_committed_before_a_502_shows_once(
    daemon: DaemonProcess, fake_discord: FakeDiscord
) -> None:
    fake_discord.fail("create_message", 502, commit=True)
    fake_discord.say(mention(fake_discord, "show 6"))
    assert fake_discord.wait(lambda: len(fake_discord.calls_to("create_message")) >= 2)
    assert not fake_discord.wait(lambda: len(fake_discord.sent) > 1, timeout=1.0)
    assert len(fake_discord.sent) == 1
    first, second = fake_discord.calls_to("create_message")[:2]
    assert first.body["nonce"] == second.body["nonce"]


def test_readiness_follows_the_gateway_connection(
    daemon: DaemonProcess, fake_discord: FakeDiscord
) -> None:
    def ready() -> httpx.Response:
        with daemon.client() as client:
            return client.get("/readyz")

    assert ready().status_code == 200
    fake_discord.drop(refuse=True)
    assert fake_discord.wait(lambda: ready().status_code == 503)
    assert ready().json()["components"]["transport:discord"].startswith("disconnected")
    fake_discord.refuse = False
    assert fake_discord.wait(lambda: ready().status_code == 200, timeout=30)
    assert fake_discord.gateway_ops.count(2) == 1 and 6 in fake_discord.gateway_ops  # resumed
    fake_discord.say(mention(fake_discord, "show 7"))
    assert fake_discord.wait(lambda: fake_discord.sent)


def test_a_refused_token_stops_the_daemon_with_the_reason(
    make_daemon: MakeDaemon, fake_discord: FakeDiscord
) -> None:
    config = discord_config(fake_discord).replace(TOKEN, "wrong-token")
    with pytest.raises(RuntimeError, match="Discord refused bot_token"):
        make_daemon(extra=config).start()


def test_the_interactions_endpoint_verifies_and_answers(
    make_daemon: MakeDaemon, fake_discord: FakeDiscord
) -> None:
    key = SigningKey.generate()
    extra = f'public_key = "{key.verify_key.encode().hex()}"'
    daemon = make_daemon(extra=discord_config(fake_discord, extra)).start()

    def post(body: bytes, headers: dict[str, str]) -> httpx.Response:
        with daemon.client() as client:
            return client.post("/webhooks/discord", content=body, headers=headers)

    ping = b'{"type":1}'
    assert post(ping, signed(key, ping)).json() == {"type": 1}
    new = fake_discord.interaction(
        "new", [{"name": "kind", "value": "bug"}, {"name": "title", "value": "Crash 💥"}]
    )
    body = json.dumps(new).encode()
    answer = post(body, signed(key, body)).json()
    assert answer["type"] == 4 and answer["data"]["content"].startswith("Created #1 Crash 💥 (bug)")
    replay = post(body, signed(key, body)).json()
    assert replay["data"]["content"] == "This command was already received."

    refused = [
        signed(SigningKey.generate(), body),
        signed(key, body, ts=int(time.time()) - 301),
        {"Content-Type": "application/json"},
    ]
    assert [post(body, headers).status_code for headers in refused] == [401, 401, 401]
    assert post(b"{not json", signed(key, b"{not json")).status_code == 400
    with daemon.client() as client:
        metrics = client.get("/metrics").text
    assert 'musher_webhook_verifications_failed_total{transport="discord"} 3' in metrics
    status = fake_discord.interaction("status")
    listing = post(json.dumps(status).encode(), signed(key, json.dumps(status).encode())).json()
    assert "#1 Crash 💥" in listing["data"]["content"]  # the replay did not create a second item
    assert "#2" not in listing["data"]["content"]


def test_a_public_key_that_is_not_one_is_refused_at_startup(
    make_daemon: MakeDaemon, fake_discord: FakeDiscord
) -> None:
    daemon = make_daemon(extra=discord_config(fake_discord, 'public_key = "abc"'))
    with pytest.raises(RuntimeError, match="64 hexadecimal digits"):
        daemon.start()


def test_typing_start_holds_a_burst_and_the_message_ends_it(
    make_daemon: MakeDaemon, fake_discord: FakeDiscord
) -> None:
    """D1 with TYPING_START: a plain window of 30 s, a quiet time of 2 s (long enough that a
    loaded machine delivers the typing within it)."""
    extra = discord_config(fake_discord)
    make_daemon(window_ms=30_000, max_wait_ms=40_000, quiet_ms=2_000, extra=extra).start()
    fake_discord.typing_start()
    time.sleep(0.3)
    fake_discord.say(mention(fake_discord, "one"))
    fake_discord.typing_start()  # typing the next one: counts 10 s unless a message ends it
    time.sleep(6)  # three quiet times
    fake_discord.say(mention(fake_discord, "two"))  # ends the typing: answered 2 s later
    assert fake_discord.wait(lambda: fake_discord.sent, timeout=15.0)
    assert fake_discord.texts(fake_discord.channel_id) == ["echo: one | two"]
