"""The live board behind the web page: a project's items over SSE, and a room's project.

``GET /api/v1/projects/{name}/events`` sends ``event: items`` with the project's whole
board, ``{"project": name, "items": [...], "agents": {"busy": 2, "max": 3}}`` (each item
with its ``agent``, as the items list; ``agents`` the pool's slots, absent without a pool),
once on connect and again after every committed change to it and whenever an agent
starts, ends or queues (bursts coalesce into one frame), with keepalive comments in
between; the stream ends when the daemon shuts down. ``GET /api/v1/rooms/{room}/project``
says which project the web room ``room`` works on (``{"project": null}`` when none). Both
are under ``/api/`` so the bearer-token middleware guards them (the stream takes
``?token=`` since EventSource cannot send headers).
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from aiohttp import web

from bot.commands.board import stage_detail, waiting_on
from bot.http import WEB_ROOM, WEB_ROOM_RULE, error
from bot.messages import session_key
from bot.pipeline_api import agent_json, item_json
from bot.sse import EventStreams, SseWriter
from pipeline.agents.pool import AgentPool
from pipeline.engine import Engine, PipelineEvent, ProjectNotFound
from pipeline.model import Item

KEEPALIVE_S = 15.0


def board_json(items: Sequence[Item]) -> list[dict[str, object]]:
    """The items as the API shows them, plus ``waiting_on`` (unmet dependencies, P4) and
    ``detail`` (why the item is where it is, e.g. ``blocked: no keys``; may be empty)."""
    by_number = {item.number: item for item in items}
    return [
        {
            **item_json(item),
            "waiting_on": waiting_on(item, by_number),
            "detail": stage_detail(item.stage),
        }
        for item in items
    ]


class BoardWatch:
    """Which projects changed, per listener, as level-triggered flags.

    Each listener holds an :class:`asyncio.Event` set when its project commits a change
    (or on :meth:`close`). A flag, not a queue: however many changes land while a listener
    is writing, it reads the board once more, so a slow client costs no memory.
    """

    def __init__(self) -> None:
        self._watchers: defaultdict[str, set[asyncio.Event]] = defaultdict(set)
        self.closed = False

    @contextmanager
    def watch(self, project: str) -> Iterator[asyncio.Event]:
        flag = asyncio.Event()
        self._watchers[project].add(flag)
        try:
            yield flag
        finally:
            watchers = self._watchers.get(project)
            if watchers is not None:
                watchers.discard(flag)
                if not watchers:
                    del self._watchers[project]

    def changed(self, event: PipelineEvent) -> None:
        """Engine listener: runs synchronously after each commit."""
        for flag in self._watchers.get(event.project, ()):
            flag.set()

    def wake_all(self) -> None:
        """Every listener reads its board again (an agent started, ended or queued)."""
        for watchers in self._watchers.values():
            for flag in watchers:
                flag.set()

    def close(self) -> None:
        """Shutdown: wake every listener so its stream ends; later streams end at once."""
        self.closed = True
        for watchers in self._watchers.values():
            for flag in watchers:
                flag.set()

    def listeners(self) -> int:
        return sum(len(w) for w in self._watchers.values())


def mount(
    app: web.Application,
    engine: Engine,
    keepalive_s: float = KEEPALIVE_S,
    max_streams: int = 32,
    agents: AgentPool | None = None,
) -> BoardWatch:
    """Add the board routes to ``app`` (before the server starts) and follow ``engine``.

    At most ``max_streams`` board streams per project are open at once (429 beyond).

    The streams end when the application shuts down (``on_shutdown`` runs before aiohttp
    waits for open requests), so an open page never holds up the daemon's exit.
    """
    board = BoardWatch()
    streams = EventStreams(max_streams)
    unsubscribe = engine.subscribe(board.changed)
    if agents is not None:
        agents.watch(board.wake_all)

    async def close(app: web.Application) -> None:
        board.close()

    async def cleanup(app: web.Application) -> None:
        unsubscribe()

    async def room_project(request: web.Request) -> web.Response:
        room = request.match_info["room"]
        if not WEB_ROOM.fullmatch(room):
            return error(400, WEB_ROOM_RULE)
        try:
            project: str | None = await engine.room_project(session_key("web", room))
        except ProjectNotFound:
            project = None
        return web.json_response({"project": project})

    async def events(request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        try:
            await engine.project(name)
        except ProjectNotFound as err:
            return error(404, str(err))

        async def body(stream: SseWriter) -> None:
            with board.watch(name) as flag:
                await _stream(stream, Frames(engine, agents), board, name, flag, keepalive_s)

        return await streams.serve(request, f"project {name}", body)

    app.on_shutdown.append(close)
    app.on_cleanup.append(cleanup)
    app.router.add_get("/api/v1/rooms/{room}/project", room_project)
    app.router.add_get("/api/v1/projects/{name}/events", events)
    return board


class Frames:
    """Reads one project's board frame: its items with their agents, and the slots."""

    def __init__(self, engine: Engine, agents: AgentPool | None) -> None:
        self.engine, self.agents = engine, agents

    async def read(self, name: str) -> dict[str, object]:
        runs = {run.item: run for run in await self.engine.store.agent_runs(name)}
        items = await self.engine.items(name)
        queued = self.agents.queued if self.agents is not None else (lambda p, n: False)
        shown = [
            {**row, "agent": agent_json(runs.get(item.number), queued(name, item.number))}
            for item, row in zip(items, board_json(items), strict=True)
        ]
        frame: dict[str, object] = {"project": name, "items": shown}
        if self.agents is not None:
            busy, most = self.agents.slots()
            frame["agents"] = {"busy": busy, "max": most}
        return frame


async def _stream(
    stream: SseWriter,
    frames: Frames,
    board: BoardWatch,
    name: str,
    flag: asyncio.Event,
    keepalive_s: float,
) -> None:
    """Write the board, then again whenever ``flag`` is set, until the daemon stops.

    The flag is cleared *before* each read, so a commit racing with the read sets it
    again and is never missed.
    """
    while not board.closed:
        flag.clear()
        await stream.send("items", await frames.read(name))
        while not flag.is_set():
            try:
                await asyncio.wait_for(flag.wait(), keepalive_s)
            except TimeoutError:
                await stream.comment("keepalive")
