"""The Matrix transport against a real Synapse: a person (a real nio client) in real rooms
talks to ``musher run`` (a real subprocess, echo LLM) and reads what the bot posted."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from tests.fakes.synapse import Bot, Human, Synapse, unique
from tests.integration.daemon import DaemonProcess

MakeDaemon = Callable[..., DaemonProcess]


async def started(daemon: DaemonProcess) -> DaemonProcess:
    return await asyncio.to_thread(daemon.start)


async def test_a_command_is_answered_as_a_notice_with_html(
    synapse: Synapse, alice: Human, make_daemon: MakeDaemon
) -> None:
    bot = Bot(synapse)
    alias = unique("team")
    room = await alice.room(invite=[bot.user_id], alias=alias)
    await started(make_daemon(extra=bot.config([f"#{alias}:{synapse.server_name}"])))
    await alice.say(room, f"{bot.localpart}: help")
    await alice.wait_for(room, bot.user_id, 1)
    (reply,) = await alice.said_by(room, bot.user_id)
    assert reply["msgtype"] == "m.notice"
    assert "status" in reply["body"]
    assert reply["format"] == "org.matrix.custom.html"
    assert "<" in reply["formatted_body"]


async def test_a_mention_starts_an_llm_turn_and_ambient_drops_the_need(
    synapse: Synapse, alice: Human, make_daemon: MakeDaemon
) -> None:
    bot = Bot(synapse)
    room = await alice.room(invite=[bot.user_id])
    await started(make_daemon(extra=bot.config([room])))
    await alice.say(room, "just chatting, not for the bot")
    await alice.say(room, f"{bot.user_id}: what is **up**?")
    pill = f'<a href="https://matrix.to/#/{bot.user_id}">Bot</a> by pill'
    await alice.say(room, "Bot by pill", format="org.matrix.custom.html", formatted_body=pill)
    bodies = await alice.wait_for(room, bot.user_id, 1)
    assert bodies == ["echo: what is **up**? | Bot by pill"]
    (reply,) = await alice.said_by(room, bot.user_id)
    assert "<strong>up</strong>" in reply["formatted_body"]
    await alice.say(room, f"{bot.localpart}: ambient on")  # now every message is for the bot
    await alice.wait_for(room, bot.user_id, 2)
    await alice.say(room, "no mention needed")
    assert (await alice.wait_for(room, bot.user_id, 3))[2] == "echo: no mention needed"


async def test_a_burst_in_one_room_is_one_turn(
    synapse: Synapse, alice: Human, make_daemon: MakeDaemon
) -> None:
    bot = Bot(synapse)
    room = await alice.room(invite=[bot.user_id])
    await started(make_daemon(window_ms=1000, extra=bot.config([room])))
    for text in ("one", "two", "three"):
        await alice.say(room, f"{bot.localpart}: {text}")
    assert await alice.wait_for(room, bot.user_id, 1) == ["echo: one | two | three"]
    await alice.say(room, f"{bot.localpart}: probe")  # turns in a room run in order
    bodies = await alice.wait_for(room, bot.user_id, 2)
    assert bodies == ["echo: one | two | three", "echo: probe"]


async def test_two_rooms_answer_in_parallel_with_typing(
    synapse: Synapse, alice: Human, make_daemon: MakeDaemon
) -> None:
    bot = Bot(synapse)
    room_a = await alice.room(invite=[bot.user_id])
    room_b = await alice.room(invite=[bot.user_id])
    await started(make_daemon(delay=3.0, window_ms=100, extra=bot.config([room_a, room_b])))
    await alice.say(room_a, f"{bot.localpart}: hello a")
    await alice.say(room_b, f"{bot.localpart}: hello b")
    await alice.wait_typing([room_a, room_b], bot.user_id)  # both turns run at once
    assert await alice.wait_for(room_a, bot.user_id, 1) == ["echo: hello a"]
    assert await alice.wait_for(room_b, bot.user_id, 1) == ["echo: hello b"]


async def test_direct_chats_and_invites(
    synapse: Synapse, alice: Human, make_daemon: MakeDaemon
) -> None:
    bot = Bot(synapse)
    mallory = Human(synapse, unique("mallory"))
    try:
        room = await alice.room(invite=[bot.user_id])
        extra = bot.config([room], allowed_users=[alice.user_id])
        await started(make_daemon(extra=extra))
        # a direct chat from an allowed user: joined, answered without a mention
        dm = await alice.room(invite=[bot.user_id], direct=True)
        assert await alice.membership(dm, bot.user_id) == "join"
        await alice.say(dm, "hi in private")
        assert await alice.wait_for(dm, bot.user_id, 1) == ["echo: hi in private"]
        # a room outside the config, and a direct chat from a stranger: both declined
        other = await alice.room(invite=[bot.user_id])
        stranger_dm = await mallory.room(invite=[bot.user_id], direct=True)
        assert await alice.membership(other, bot.user_id) == "leave"
        assert await mallory.membership(stranger_dm, bot.user_id) == "leave"
    finally:
        await mallory.close()


async def test_an_encrypted_room_is_told_once_that_encryption_is_off(
    synapse: Synapse, alice: Human, make_daemon: MakeDaemon
) -> None:
    bot = Bot(synapse)
    encryption = {
        "type": "m.room.encryption",
        "state_key": "",
        "content": {"algorithm": "m.megolm.v1.aes-sha2"},
    }
    room = await alice.room(invite=[bot.user_id], initial_state=[encryption])
    await started(make_daemon(extra=bot.config([room])))
    assert await alice.membership(room, bot.user_id) == "join"
    for n in range(2):  # what an E2EE client posts: ciphertext the bot cannot read
        content = {
            "algorithm": "m.megolm.v1.aes-sha2",
            "ciphertext": f"AwgAEnACgAkLmt{n}",
            "sender_key": "k" * 43,
            "session_id": "s" * 43,
            "device_id": "ALICEDEVICE",
        }
        await alice.client.room_send(room, "m.room.encrypted", content)
    bodies = await alice.wait_for(room, bot.user_id, 1)
    assert len(bodies) == 1 and "encrypted" in bodies[0]
    await alice.say(room, f"{bot.localpart}: plain text still works")
    bodies = await alice.wait_for(room, bot.user_id, 2)
    assert bodies[1:] == ["echo: plain text still works"]


async def test_a_wrong_password_stops_the_start_with_a_clear_error(
    synapse: Synapse, make_daemon: MakeDaemon
) -> None:
    bot = Bot(synapse)
    daemon = make_daemon(extra=bot.config([], password="not-the-password"))
    with pytest.raises(RuntimeError, match=r"daemon exited") as failed:
        await started(daemon)
    assert f"matrix: login as {bot.user_id} failed: M_FORBIDDEN" in str(failed.value)
    assert "not-the-password" not in str(failed.value)


async def test_typing_keeps_a_burst_together_and_stopping_answers_before_the_window(
    synapse: Synapse, alice: Human, make_daemon: MakeDaemon
) -> None:
    """D1 with ``m.typing``: a plain window of 20 s, a quiet time of 1 s."""
    bot = Bot(synapse)
    pausing = await alice.room(invite=[bot.user_id])
    stopping = await alice.room(invite=[bot.user_id])
    extra = bot.config([pausing, stopping])
    daemon = make_daemon(window_ms=20_000, max_wait_ms=30_000, quiet_ms=1_000, extra=extra)
    await started(daemon)
    lead = f"{bot.localpart}: "
    for room in (pausing, stopping):
        assert await alice.membership(room, bot.user_id) == "join"

    # as Element does: typing (a second here), stopped as the message goes out
    await alice.typing(stopping, True)
    await asyncio.sleep(1)
    await alice.typing(stopping, False)
    await alice.say(stopping, lead + "quick question")
    # answered a quiet second after the message, while the 20 s window would still be open
    assert await alice.wait_for(stopping, bot.user_id, 1, within=10) == ["echo: quick question"]

    await alice.typing(pausing, True)
    await asyncio.sleep(1)
    await alice.typing(pausing, False)
    await alice.say(pausing, lead + "one")
    await alice.typing(pausing, True)
    await asyncio.sleep(3)  # three quiet times: only the typing holds the batch open
    await alice.typing(pausing, False)
    await alice.say(pausing, lead + "two")
    assert await alice.wait_for(pausing, bot.user_id, 1, within=10) == ["echo: one | two"]
