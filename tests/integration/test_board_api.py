"""The live board API over a real socket: the SSE stream of a project's board, the room's
project, the token rule, and a shutdown that an open stream does not hold up."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from bot.board_api import BoardWatch, mount
from bot.db import Database
from bot.http import HttpServer, build_app
from bot.metrics import Metrics
from config import load_settings
from pipeline.engine import Engine
from pipeline.keys import NodeKey
from pipeline.model import ItemKind, SystemOrigin, UserOrigin
from pipeline.store import OpStore
from pipeline.transitions import Freeze, Move

ALICE = UserOrigin("web", "alice", "lobby")
STORY = ItemKind.STORY


class Board:
    """An engine with two projects behind a real HTTP server running the board routes."""

    def __init__(self, engine: Engine, server: HttpServer, watch: BoardWatch, url: str) -> None:
        self.engine, self.server, self.watch, self.url = engine, server, watch, url

    async def stream(
        self, session: aiohttp.ClientSession, path: str
    ) -> AsyncIterator[tuple[str, Any]]:
        """``(event, data)`` per SSE frame; comments come as ``("comment", text)``."""
        async with session.get(self.url + path) as response:
            assert response.status == 200, await response.text()
            assert response.headers["Content-Type"] == "text/event-stream"
            kind, data = "message", ""
            async for raw in response.content:
                line = raw.decode().rstrip("\n")
                if line.startswith(":"):
                    yield "comment", line[1:].strip()
                elif line.startswith("event:"):
                    kind = line[6:].strip()
                elif line.startswith("data:"):
                    data += line[5:].strip()
                elif not line and data:
                    yield kind, json.loads(data)
                    kind, data = "message", ""


async def open_board(
    tmp_path: Path, token: str | None = None, keepalive_s: float = 15.0
) -> tuple[Board, Database]:
    db = await Database.open(tmp_path / "musher.db")
    store = await OpStore.open(db, NodeKey.generate())
    engine = Engine(store)
    startup = SystemOrigin("daemon", "startup")
    await engine.ensure_project("demo", "/srv/demo", origin=startup)
    await engine.ensure_project("other", "/srv/other", origin=startup)
    engine.default_project = "demo"
    env = {"MUSHER_HTTP__TOKEN": token} if token else {}
    app = build_app(Metrics(), dict, load_settings(None, env))
    watch = mount(app, engine, keepalive_s=keepalive_s)
    server = HttpServer(app, "127.0.0.1", 0)
    server._runner._shutdown_timeout = 30.0  # so a stream that stays open would show
    url = await server.start()
    return Board(engine, server, watch, url), db


@pytest.fixture
async def board(tmp_path: Path) -> AsyncIterator[Board]:
    b, db = await open_board(tmp_path)
    yield b
    await b.server.aclose()
    await db.aclose()


Card = tuple[int, str, str, list[int]]


def cards(frame: dict[str, Any]) -> list[Card]:
    return [(i["number"], i["column"], i["badge"], i["waiting_on"]) for i in frame["items"]]


async def drawn(frames: Any, want: list[Card]) -> None:
    """Read frames until one shows ``want``: commits that land while the board is read are
    drawn again, so the same board may come twice, and two commits may share a frame."""
    seen = []
    for _ in range(4):
        seen.append(cards((await anext(frames))[1]))
        if seen[-1] == want:
            return
    raise AssertionError(f"no frame showed {want}: {seen}")


async def test_the_board_streams_on_connect_and_after_every_change(board: Board) -> None:
    await board.engine.create("demo", STORY, "Login page", ALICE)
    async with aiohttp.ClientSession() as session:
        frames = board.stream(session, "/api/v1/projects/demo/events")
        kind, first = await anext(frames)
        assert (kind, first["project"]) == ("items", "demo")
        [login] = first["items"]
        assert login == {
            "number": 1, "kind": "story", "title": "Login page", "stage": "backlog",
            "column": "backlog", "badge": "active", "depends_on": [], "waiting_on": [],
            "detail": "", "agent": None,
        }  # fmt: skip
        assert "agents" not in first  # no agent pool here: no slots to show

        await board.engine.create("demo", ItemKind.BUG, "Logout", ALICE, depends_on=[1])
        assert cards((await anext(frames))[1]) == [
            (1, "backlog", "active", []),
            (2, "backlog", "active", [1]),
        ]
        await board.engine.apply("demo", 1, Move("coding"), ALICE)
        await board.engine.apply("demo", 1, Freeze(), ALICE)
        frozen: Card = (1, "coding", "frozen", [])  # frozen shows where it resumes
        await drawn(frames, [frozen, (2, "backlog", "active", [1])])

        await board.engine.create("other", STORY, "elsewhere", ALICE)  # not this board
        await board.engine.purge("demo", 2, ALICE)
        await drawn(frames, [frozen])
        await frames.aclose()
    for _ in range(100):  # the server notices the closed connection on its next write
        if not board.watch.listeners():
            break
        await board.engine.create("demo", STORY, "poke", ALICE)
        await asyncio.sleep(0.01)
    assert board.watch.listeners() == 0


async def test_an_unknown_project_is_404_and_rooms_know_their_project(board: Board) -> None:
    async with aiohttp.ClientSession() as session:
        async with session.get(board.url + "/api/v1/projects/nope/events") as response:
            assert response.status == 404
            assert "No project 'nope'" in (await response.json())["error"]
        project = board.url + "/api/v1/rooms/lobby/project"
        async with session.get(project) as response:
            assert await response.json() == {"project": "demo"}
        await board.engine.switch("web:lobby", "other", ALICE)
        async with session.get(project) as response:
            assert await response.json() == {"project": "other"}
        async with session.get(board.url + "/api/v1/rooms/elsewhere/project") as response:
            assert await response.json() == {"project": "demo"}
        board.engine.default_project = None
        async with session.get(board.url + "/api/v1/rooms/elsewhere/project") as response:
            assert await response.json() == {"project": None}
        async with session.get(board.url + "/api/v1/rooms/b%20d/project") as response:
            assert response.status == 400


async def test_the_stream_sends_keepalives(tmp_path: Path) -> None:
    board, db = await open_board(tmp_path, keepalive_s=0.05)
    try:
        async with aiohttp.ClientSession() as session:
            frames = board.stream(session, "/api/v1/projects/demo/events")
            seen = [kind async for kind, _ in _take(frames, 4)]
            assert seen.count("items") == 1
            assert seen[-1] == "comment"
            await frames.aclose()
    finally:
        await board.server.aclose()
        await db.aclose()


async def test_the_stream_takes_the_token_as_a_query_parameter(tmp_path: Path) -> None:
    board, db = await open_board(tmp_path, token="s3cret")
    try:
        async with aiohttp.ClientSession() as session:
            for path in ("/api/v1/projects/demo/events", "/api/v1/rooms/lobby/project"):
                async with session.get(board.url + path) as response:
                    assert response.status == 401
            frames = board.stream(session, "/api/v1/projects/demo/events?token=s3cret")
            assert [kind async for kind, _ in _take(frames, 1)] == ["items"]
            await frames.aclose()
            headers = {"Authorization": "Bearer s3cret"}
            async with session.get(board.url + "/api/v1/rooms/lobby/project", headers=headers) as r:
                assert await r.json() == {"project": "demo"}
    finally:
        await board.server.aclose()
        await db.aclose()


async def test_shutdown_ends_open_streams_at_once(tmp_path: Path) -> None:
    board, db = await open_board(tmp_path)
    try:
        async with aiohttp.ClientSession() as session:
            frames = board.stream(session, "/api/v1/projects/demo/events")
            assert [kind async for kind, _ in _take(frames, 1)] == ["items"]
            assert board.watch.listeners() == 1
            async with asyncio.timeout(5):  # aiohttp alone would wait 30 s for the stream
                await board.server.aclose()
                assert [kind async for kind, _ in frames] == []  # it ended cleanly
        assert board.watch.listeners() == 0
    finally:
        await db.aclose()


async def _take(frames: AsyncIterator[tuple[str, Any]], n: int) -> AsyncIterator[tuple[str, Any]]:
    for _ in range(n):
        yield await anext(frames)
