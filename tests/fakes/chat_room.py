"""One chat room on an in-process daemon core: the parts ``musher run`` builds, minus the HTTP
app, with a :class:`MemoryTransport` for the room and the MCP routes on a real loopback
server (so a ``claude`` CLI, fake or real, can call back). Time for the dispatcher and the
approvals' timeout is a :class:`VirtualClock`.

People talk with :meth:`ChatRoom.say` (intake, then the room's lane acts, then due batches
close); :meth:`ChatRoom.wait_for` waits until the room has been sent a text containing a
given string. ``alice``, ``bob`` and ``carol`` may talk; ``carol`` is an admin.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web

from bot.access import AccessPolicies, AccessPolicy
from bot.clock import VirtualClock
from bot.daemon import Core, build_core, ensure_default_project
from bot.db import Database
from bot.http import HttpServer
from bot.llm.base import Provider, TurnRequest
from bot.schema import DAEMON_SCHEMA
from config import load_settings
from pipeline.keys import load_or_create
from pipeline.store import OpStore
from tests.fakes.memory_transport import MemoryTransport

ROOM = "!room"
SESSION = f"chat:{ROOM}"
McpConfigFor = Callable[[TurnRequest], dict[str, Any] | None]
MakeProvider = Callable[[McpConfigFor, Database], Provider]


@dataclass
class ChatRoom:
    core: Core
    transport: MemoryTransport
    clock: VirtualClock
    project: Path
    store: OpStore
    db: Database

    async def say(self, sender: str, text: str) -> None:
        """``sender`` writes ``text``; returns once the lane acted and due batches closed."""
        await self.transport.say(ROOM, sender, text, mentioned=True)
        await self.core.lanes.join()
        await self.clock.advance(0)

    def texts(self) -> list[str]:
        return self.transport.texts(SESSION)

    async def wait_for(self, needle: str, after: int = 0, timeout_s: float = 40) -> str:
        """The first text sent to the room (from index ``after``) containing ``needle``."""
        try:
            async with asyncio.timeout(timeout_s):
                while True:
                    for text in self.texts()[after:]:
                        if needle in text:
                            return text
                    await asyncio.sleep(0.02)
        except TimeoutError:
            raise AssertionError(f"no {needle!r} in the room; it got {self.texts()}") from None

    async def idle(self, timeout_s: float = 40) -> None:
        """Until no turn runs or waits in the room."""
        async with asyncio.timeout(timeout_s):
            await self.core.dispatcher.join()


@contextlib.asynccontextmanager
async def chat_room(
    tmp_path: Path, make_provider: MakeProvider, tools: str = "ask"
) -> AsyncIterator[ChatRoom]:
    """A started room whose LLM is ``make_provider(mcp_config_for, db)``, with ``[llm] tools``."""
    env = {
        "MUSHER_DISPATCHER__COALESCE_WINDOW_MS": "0",
        "MUSHER_TRANSPORTS__WEB__ENABLED": "false",
        "MUSHER_LLM__TOOLS": tools,
    }
    settings = load_settings(None, env)
    db = await Database.open(tmp_path / "musher.db", DAEMON_SCHEMA)
    store = await OpStore.open(db, load_or_create(tmp_path))
    clock = VirtualClock()
    access = AccessPolicies({"chat": AccessPolicy.build(["alice", "bob", "carol"], ["carol"])})
    bridges: list[Core] = []
    provider = make_provider(lambda request: bridges[0].mcp.config_for(request), db)
    core = build_core(settings, db, store, provider=provider, clock=clock, access=access)
    bridges.append(core)
    project = tmp_path / "project"
    project.mkdir()
    await ensure_default_project(core, project)
    app = web.Application()
    core.mcp.mount(app)
    server = HttpServer(app, "127.0.0.1", 0)
    core.mcp.url = await server.start()
    transport = MemoryTransport()
    core.outbox.attach(transport)
    await transport.start(core.ingress({"chat": transport.identities}))
    try:
        yield ChatRoom(core, transport, clock, project.resolve(), store, db)
    finally:
        await transport.aclose()
        await core.lanes.aclose(0)
        await core.dispatcher.aclose()
        await core.approvals.aclose()
        await provider.aclose()
        await server.aclose()
        await db.aclose()
