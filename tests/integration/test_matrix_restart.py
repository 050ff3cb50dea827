"""Matrix across restarts (R10): what was said while musher was down, starting or killed
is answered once and only once; an expired login is renewed without losing messages."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import Callable

import httpx
import pytest

from tests.fakes.synapse import Bot, Human, Synapse
from tests.integration.daemon import DaemonProcess

MakeDaemon = Callable[..., DaemonProcess]


async def start(daemon: DaemonProcess) -> DaemonProcess:
    return await asyncio.to_thread(daemon.start)


def echoed(bodies: list[str]) -> Counter[str]:
    """How many times each message text was answered by an echo turn."""
    return Counter(
        text for body in bodies if body.startswith("echo: ") for text in body[6:].split(" | ")
    )


@pytest.mark.timeout(90)
async def test_messages_sent_while_down_or_starting_are_answered_once(
    synapse: Synapse, alice: Human, make_daemon: MakeDaemon
) -> None:
    bot = Bot(synapse)
    room = await alice.room(invite=[bot.user_id])
    daemon = make_daemon(window_ms=300, extra=bot.config([room]))
    await start(daemon)
    await alice.say(room, f"{bot.localpart}: before")
    assert await alice.wait_for(room, bot.user_id, 1) == ["echo: before"]
    assert await asyncio.to_thread(daemon.terminate) == 0
    for text in ("down one", "down two"):
        await alice.say(room, f"{bot.localpart}: {text}")
    starting = asyncio.create_task(start(daemon))
    await alice.say(room, f"{bot.localpart}: while starting")
    await starting
    await alice.say(room, f"{bot.localpart}: after")
    expected = {"before", "down one", "down two", "while starting", "after"}
    for _ in range(40):
        bodies = await alice.wait_for(room, bot.user_id, 1)
        if set(echoed(bodies)) >= expected:
            break
        await asyncio.sleep(0.25)
    await alice.say(room, f"{bot.localpart}: probe")  # turns in a room run in order
    bodies = await alice.wait_for(room, bot.user_id, len(bodies) + 1)
    assert echoed(bodies) == dict.fromkeys([*expected, "probe"], 1), bodies


@pytest.mark.timeout(120)
@pytest.mark.parametrize("when", ["right after sending", "during the turn"])
async def test_sigkill_then_restart_loses_nothing_and_answers_once(
    synapse: Synapse, alice: Human, make_daemon: MakeDaemon, when: str
) -> None:
    bot = Bot(synapse)
    room = await alice.room(invite=[bot.user_id])
    daemon = make_daemon(delay=1.0, window_ms=200, extra=bot.config([room]))
    await start(daemon)
    for text in ("a", "b"):
        await alice.say(room, f"{bot.localpart}: {text}")
    if when == "during the turn":
        await alice.wait_typing([room], bot.user_id)
    daemon.kill()  # SIGKILL
    await alice.say(room, f"{bot.localpart}: c")
    await start(daemon)
    for _ in range(60):
        bodies = await alice.wait_for(room, bot.user_id, 1)
        if set(echoed(bodies)) >= {"a", "b", "c"}:
            break
        await asyncio.sleep(0.25)
    await alice.say(room, f"{bot.localpart}: probe")
    bodies = await alice.wait_for(room, bot.user_id, len(bodies) + 1)
    assert echoed(bodies) == {"a": 1, "b": 1, "c": 1, "probe": 1}, bodies


async def test_an_expired_token_is_renewed_by_logging_in_again(
    synapse: Synapse, alice: Human, make_daemon: MakeDaemon
) -> None:
    bot = Bot(synapse)
    room = await alice.room(invite=[bot.user_id])
    daemon = make_daemon(extra=bot.config([room]))
    await start(daemon)
    session_file = daemon.data_dir / "matrix" / "session.json"
    assert session_file.stat().st_mode & 0o777 == 0o600
    first = json.loads(session_file.read_text())
    async with httpx.AsyncClient() as http:  # the homeserver forgets the bot's token
        headers = {"Authorization": f"Bearer {first['access_token']}"}
        response = await http.post(f"{synapse.url}/_matrix/client/v3/logout", headers=headers)
        assert response.status_code == 200
    await alice.say(room, f"{bot.localpart}: still there?")
    assert await alice.wait_for(room, bot.user_id, 1) == ["echo: still there?"]
    renewed = json.loads(session_file.read_text())
    assert renewed["device_id"] == first["device_id"]  # still one device
    assert renewed["access_token"] != first["access_token"]
    assert await asyncio.to_thread(daemon.terminate) == 0
    await start(daemon)  # the renewed session is the one used now
    await alice.say(room, f"{bot.localpart}: and now?")
    assert (await alice.wait_for(room, bot.user_id, 2))[1:] == ["echo: and now?"]
    assert json.loads(session_file.read_text()) == renewed
