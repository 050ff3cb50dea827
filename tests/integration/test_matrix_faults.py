"""Outbound 429 and 5xx from the homeserver (R11): a proxy in front of the real Synapse
answers the bot's sends with ``M_LIMIT_EXCEEDED`` or commits them and answers 502, and
fails syncs with 502. The room must show each reply exactly once, nothing may be sent
inside a Retry-After window, and the sync loop must carry on."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable

import httpx

from tests.fakes.matrix_proxy import CommitThen502, MatrixProxy, RateLimit
from tests.fakes.synapse import Bot, Human, Synapse
from tests.integration.daemon import DaemonProcess

MakeDaemon = Callable[..., DaemonProcess]


async def test_429_and_5xx_post_each_reply_once_and_syncing_recovers(
    synapse: Synapse, alice: Human, make_daemon: MakeDaemon
) -> None:
    bot = Bot(synapse)
    room = await alice.room(invite=[bot.user_id])
    async with MatrixProxy(synapse.url) as proxy:
        daemon = make_daemon(extra=bot.config([room], homeserver=proxy.url))
        await asyncio.to_thread(daemon.start)
        proxy.faults.append(RateLimit(1500))
        await alice.say(room, f"{bot.localpart}: one")
        assert await alice.wait_for(room, bot.user_id, 1) == ["echo: one"]
        proxy.faults.extend([CommitThen502(), CommitThen502()])
        await alice.say(room, f"{bot.localpart}: two")
        assert await alice.wait_for(room, bot.user_id, 2) == ["echo: one", "echo: two"]
        await alice.say(room, f"{bot.localpart}: three")  # nothing else is still on its way
        bodies = await alice.wait_for(room, bot.user_id, 3)
        assert bodies == ["echo: one", "echo: two", "echo: three"]
        proxy.failing_syncs = 2  # the sync loop backs off and carries on
        await alice.say(room, f"{bot.localpart}: four")
        await alice.say(room, f"{bot.localpart}: five")
        bodies = await alice.wait_for(room, bot.user_id, 4)
        await alice.say(room, f"{bot.localpart}: six")
        bodies = await alice.wait_for(room, bot.user_id, len(bodies) + 1)
        assert " | ".join(b.removeprefix("echo: ") for b in bodies[3:]) == "four | five | six"
        async with httpx.AsyncClient(base_url=daemon.url) as http:
            metrics = (await http.get("/metrics")).text
        assert await asyncio.to_thread(daemon.terminate) == 0

    sends = proxy.sends()
    statuses = [s.status for s in sends]
    assert statuses[:6] == [429, 200, 502, 502, 200, 200], sends
    assert set(statuses[6:]) == {200}
    assert [s.status for s in proxy.seen if s.path.endswith("/sync")].count(502) == 2
    assert sends[0].path == sends[1].path  # the rate-limited send was retried as is
    assert sends[2].path == sends[3].path == sends[4].path  # same transaction id: no double
    window = sends[0]
    inside = [
        s
        for s in proxy.seen
        if window.at < s.at < window.window_end and not s.path.endswith("/sync")
    ]
    assert inside == [], "requests inside the Retry-After window"
    retried = re.search(r'musher_sends_retried_total\{transport="matrix"\} (\d+)', metrics)
    assert retried is not None and int(retried.group(1)) == 2, metrics
