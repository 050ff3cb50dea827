"""A slow application command over the real gateway: a real ``discord.Client`` (inside the
transport, in this process) against the fake Discord; ingress is a stand-in that answers
commands after a delay through ``transport.send``, as the daemon's command lane will."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.commands.catalogue import build_registry
from bot.db import Database
from bot.feed import RoomFeed
from bot.journal import Journal
from bot.kv import TransportState
from bot.messages import InboundMessage, Reply
from bot.metrics import Metrics
from bot.schema import DAEMON_SCHEMA
from bot.transport import FeedResult, TransportContext
from config.models import DiscordConfig, Settings
from tests.fakes.discord_api import TOKEN, FakeDiscord
from transports.discord.client import DiscordTransport

DELAY_S = 0.8


class SlowIngress:
    """Journals nothing; answers each command ``DELAY_S`` later in its reply handle."""

    def __init__(self) -> None:
        self.transport: DiscordTransport | None = None
        self.tasks: set[asyncio.Task[None]] = set()

    async def feed(self, msg: InboundMessage) -> FeedResult:
        task = asyncio.create_task(self._answer(msg))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return FeedResult.ACCEPTED

    async def _answer(self, msg: InboundMessage) -> None:
        await asyncio.sleep(DELAY_S)
        assert self.transport is not None
        for i, text in enumerate((f"done: {msg.text}", "second part")):
            reply = Reply(text, ephemeral=msg.ephemeral_ok, key=f"c1.{i}", reply_to=msg.reply_to)
            await self.transport.send(msg.session, reply)


@pytest.fixture
async def transport(tmp_path: Path, fake_discord: FakeDiscord) -> AsyncIterator[DiscordTransport]:
    db = await Database.open(tmp_path / "musher.db", DAEMON_SCHEMA)
    config = DiscordConfig(
        enabled=True,
        bot_token=TOKEN,
        api_base_url=fake_discord.api_url,
        gateway_url=fake_discord.gateway_url,
        guilds=[fake_discord.guild_id],
    )
    settings = Settings()
    ctx = TransportContext(
        settings, db, Journal(db), RoomFeed(), Metrics(), TransportState(db), build_registry()
    )
    transport = DiscordTransport(ctx, config)
    transport.interactions.budget = 0.2
    ingress = SlowIngress()
    ingress.transport = transport
    await transport.start(ingress)
    yield transport
    await transport.aclose()
    await asyncio.gather(*ingress.tasks, return_exceptions=True)
    await db.aclose()


async def test_a_slow_command_is_deferred_then_followed_up(
    transport: DiscordTransport, fake_discord: FakeDiscord
) -> None:
    move = fake_discord.slash(
        "move", [{"name": "item", "value": 3}, {"name": "stage", "value": "qa"}]
    )
    status = fake_discord.slash("status")
    assert await asyncio.to_thread(fake_discord.wait, lambda: len(fake_discord.followups) == 4)
    callbacks = {c["interaction_id"]: c for c in fake_discord.callbacks}
    assert callbacks[move] == {"interaction_id": move, "type": 5}  # a change: public
    assert callbacks[status] == {"interaction_id": status, "type": 5, "data": {"flags": 64}}

    def followed(iid: str) -> list[tuple[str, object]]:
        mine = [f for f in fake_discord.followups if f["token"] == f"tok-{iid}"]
        return [(f["content"], f.get("flags")) for f in mine]

    assert followed(move) == [("done: move 3 qa", None), ("second part", None)]
    assert followed(status) == [("done: status", 64), ("second part", 64)]
    assert fake_discord.sent == []  # nothing went to the channel itself
