"""Matrix with ``encryption = true`` against a real Synapse: a person with an E2EE client
(its own key store) talks to ``musher run`` in an encrypted room; what the bot posts is
ciphertext on the wire, and the bot still reads the room after a restart."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.fakes.synapse import Bot, Human, Synapse, unique
from tests.integration.daemon import DaemonProcess

MakeDaemon = Callable[..., DaemonProcess]
ENCRYPTION = {
    "type": "m.room.encryption",
    "state_key": "",
    "content": {"algorithm": "m.megolm.v1.aes-sha2"},
}


@pytest.fixture
async def carol(synapse: Synapse, tmp_path: Path) -> AsyncIterator[Human]:
    """A person whose client does end-to-end encryption."""
    human = Human(synapse, unique("carol"), store=tmp_path / "carol-store")
    await human.catch_up()  # uploads the device's keys
    yield human
    await human.close()


async def start(daemon: DaemonProcess) -> DaemonProcess:
    return await asyncio.to_thread(daemon.start)


async def wire(synapse: Synapse, human: Human, room: str, sender: str) -> list[dict[str, Any]]:
    """The events ``sender`` posted in ``room`` as the homeserver stores them."""
    async with httpx.AsyncClient(base_url=synapse.url) as http:
        response = await http.get(
            f"/_matrix/client/v3/rooms/{room}/messages",
            params={"dir": "b", "limit": 100},
            headers={"Authorization": f"Bearer {human.access_token}"},
        )
    response.raise_for_status()
    chunk: list[dict[str, Any]] = response.json()["chunk"]
    return [ev for ev in chunk if ev["sender"] == sender and "state_key" not in ev]


async def device_keys(synapse: Synapse, human: Human, user_id: str) -> dict[str, Any]:
    """The devices of ``user_id`` that have keys on the homeserver."""
    async with httpx.AsyncClient(base_url=synapse.url) as http:
        response = await http.post(
            "/_matrix/client/v3/keys/query",
            json={"device_keys": {user_id: []}},
            headers={"Authorization": f"Bearer {human.access_token}"},
        )
    response.raise_for_status()
    keys: dict[str, Any] = response.json()["device_keys"].get(user_id, {})
    return keys


async def encrypted_room(
    synapse: Synapse, carol: Human, make_daemon: MakeDaemon
) -> tuple[Bot, str, DaemonProcess]:
    """A new bot account, an encrypted room of carol's it was invited to, and a running
    daemon with ``encryption = true`` that has joined it."""
    bot = Bot(synapse)
    room = await carol.room(invite=[bot.user_id], initial_state=[ENCRYPTION])
    daemon = await start(make_daemon(extra=bot.config([room], encryption=True)))
    assert await carol.membership(room, bot.user_id) == "join"
    return bot, room, daemon


@pytest.mark.timeout(90)
async def test_an_encrypted_room_round_trip_also_after_a_restart(
    synapse: Synapse, carol: Human, make_daemon: MakeDaemon
) -> None:
    bot, room, daemon = await encrypted_room(synapse, carol, make_daemon)
    await carol.say(room, f"{bot.localpart}: a secret")
    assert await carol.wait_for(room, bot.user_id, 1) == ["echo: a secret"]
    (reply,) = await carol.said_by(room, bot.user_id)
    assert reply["msgtype"] == "m.notice" and "formatted_body" in reply
    sent = await wire(synapse, carol, room, bot.user_id)
    assert [ev["type"] for ev in sent] == ["m.room.encrypted"]
    assert "echo" not in json.dumps(sent)
    session = json.loads((daemon.data_dir / "matrix" / "session.json").read_text())
    store = daemon.data_dir / "matrix" / "store"
    assert any(session["device_id"] in p.name for p in store.iterdir())
    assert store.stat().st_mode & 0o777 == 0o700
    assert "peewee" not in daemon.log_text()  # the store's queries carry key material

    assert await asyncio.to_thread(daemon.terminate) == 0
    await carol.say(room, f"{bot.localpart}: said while down")
    await start(daemon)  # same device, keys from the store
    await carol.say(room, f"{bot.localpart}: and after")
    for _ in range(40):
        bodies = await carol.wait_for(room, bot.user_id, 2)
        if "and after" in " ".join(bodies):
            break
        await asyncio.sleep(0.25)
    assert "said while down" in " ".join(bodies[1:]) and "and after" in " ".join(bodies[1:])
    assert not any("could not decrypt" in b for b in bodies), bodies
    after = json.loads((daemon.data_dir / "matrix" / "session.json").read_text())
    assert after["device_id"] == session["device_id"]
    assert {ev["type"] for ev in await wire(synapse, carol, room, bot.user_id)} == {
        "m.room.encrypted"
    }


async def test_an_undecryptable_message_is_reported_once(
    synapse: Synapse, carol: Human, make_daemon: MakeDaemon
) -> None:
    bot, room, _ = await encrypted_room(synapse, carol, make_daemon)
    for n in range(2):  # ciphertext of a session the bot was never given
        content = {
            "algorithm": "m.megolm.v1.aes-sha2",
            "ciphertext": f"AwgAEnACgAkLmt{n}",
            "sender_key": "k" * 43,
            "session_id": "s" * 43,
            "device_id": "CAROLDEVICE",
        }
        async with httpx.AsyncClient(base_url=synapse.url) as http:  # raw: nio would encrypt
            response = await http.put(
                f"/_matrix/client/v3/rooms/{room}/send/m.room.encrypted/{unique('t')}",
                json=content,
                headers={"Authorization": f"Bearer {carol.access_token}"},
            )
            response.raise_for_status()
    bodies = await carol.wait_for(room, bot.user_id, 1)
    assert len(bodies) == 1 and "could not decrypt" in bodies[0]
    await carol.say(room, f"{bot.localpart}: this one is readable")
    bodies = await carol.wait_for(room, bot.user_id, 2)
    assert bodies[1:] == ["echo: this one is readable"]


async def test_after_a_logout_the_bot_logs_in_again_and_still_reads_the_room(
    synapse: Synapse, carol: Human, make_daemon: MakeDaemon
) -> None:
    bot, room, daemon = await encrypted_room(synapse, carol, make_daemon)
    await carol.say(room, f"{bot.localpart}: before")
    assert await carol.wait_for(room, bot.user_id, 1) == ["echo: before"]
    session = json.loads((daemon.data_dir / "matrix" / "session.json").read_text())
    async with httpx.AsyncClient() as http:  # deletes the device and its keys on the server
        headers = {"Authorization": f"Bearer {session['access_token']}"}
        response = await http.post(f"{synapse.url}/_matrix/client/v3/logout", headers=headers)
        assert response.status_code == 200
    for _ in range(100):  # the bot notices, logs in as the same device, uploads its keys
        if session["device_id"] in await device_keys(synapse, carol, bot.user_id):
            break
        await asyncio.sleep(0.2)
    else:
        raise AssertionError("the bot did not upload its device keys again")
    await carol.say(room, f"{bot.localpart}: after")
    assert await carol.wait_for(room, bot.user_id, 2) == ["echo: before", "echo: after"]
