"""The board's detail routes over a real socket: one item in full, its history from the op
log, the cost chart (matching the ``cost`` report), ``/me``, and the guard's rules."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from bot import item_api
from bot.access import AccessPolicies
from bot.cost import CostBook
from bot.db import Database
from bot.http import HttpServer, build_app
from bot.metrics import Metrics
from bot.schema import DAEMON_SCHEMA
from config import load_settings
from pipeline.engine import Engine
from pipeline.keys import NodeKey
from pipeline.model import ItemKind, SystemOrigin, UserOrigin
from pipeline.store import OpStore
from pipeline.transitions import Move

ALICE = UserOrigin("web", "alice", "lobby")
USERS = {
    "MUSHER_TRANSPORTS__WEB__USERS": '{"boss": "tok-boss", "ann": "tok-ann"}',
    "MUSHER_TRANSPORTS__WEB__ADMINS": '["boss"]',
}


class Api:
    def __init__(self, url: str, engine: Engine, costs: CostBook) -> None:
        self.url, self.engine, self.costs = url, engine, costs

    async def get(self, path: str, token: str | None = None) -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        async with (
            aiohttp.ClientSession() as session,
            session.get(self.url + path, headers=headers) as response,
        ):
            return response.status, await response.json()


async def serve(tmp_path: Path, env: dict[str, str]) -> AsyncIterator[Api]:
    db = await Database.open(tmp_path / "musher.db", DAEMON_SCHEMA)
    engine = Engine(await OpStore.open(db, NodeKey.generate()))
    await engine.ensure_project("demo", "/srv/demo", origin=SystemOrigin("daemon", "startup"))
    settings = load_settings(None, env)
    app = build_app(Metrics(), dict, settings)
    costs = CostBook(db)
    access = AccessPolicies.from_settings({"web": settings.transports.web})
    item_api.mount(app, engine, costs, access)
    server = HttpServer(app, "127.0.0.1", 0)
    url = await server.start()
    try:
        yield Api(url, engine, costs)
    finally:
        await server.aclose()
        await db.aclose()


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[Api]:
    async for a in serve(tmp_path, {}):
        yield a


@pytest.fixture
async def guarded(tmp_path: Path) -> AsyncIterator[Api]:
    async for a in serve(tmp_path, USERS):
        yield a


async def test_an_item_in_full_with_its_history(api: Api) -> None:
    engine = api.engine
    await engine.create("demo", ItemKind.STORY, "Login page", ALICE)
    await engine.create("demo", ItemKind.BUG, "Logout", ALICE, depends_on=(1,))
    await engine.apply("demo", 1, Move("coding"), ALICE)
    await api.costs.record(7, "web:lobby", "openai", 10, 5, 0.25, "demo", 2)

    status, item = await api.get("/api/v1/projects/demo/items/2")
    assert status == 200
    assert (item["title"], item["stage"], item["waiting_on"]) == ("Logout", "backlog", [1])
    assert item["dependencies"] == [{"number": 1, "title": "Login page", "column": "coding"}]
    assert item["cost"] == {"usd": 0.25, "turns": 1}
    assert item["timers"] == []

    status, body = await api.get("/api/v1/projects/demo/items/1/history")
    assert status == 200
    assert [(h["who"], h["summary"]) for h in body["history"]] == [
        ("alice (web:lobby)", "created story 'Login page' in backlog"),
        ("alice (web:lobby)", "stage backlog → coding"),
    ]
    assert body["history"][1]["origin"] == {"transport": "web", "user": "alice", "room": "lobby"}


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/api/v1/projects/demo/items/9", 404),
        ("/api/v1/projects/nope/items/1", 404),
        ("/api/v1/projects/demo/items/0", 400),
        ("/api/v1/projects/demo/items/99999999999999999999", 400),
        ("/api/v1/projects/demo/items/x/history", 400),
        ("/api/v1/cost?days=0", 400),
        ("/api/v1/cost?days=abc", 400),
    ],
)
async def test_bad_or_unknown_items_are_clear_4xx(api: Api, path: str, status: int) -> None:
    got, body = await api.get(path)
    assert (got, bool(body["error"])) == (status, True)


async def test_the_chart_has_every_day_and_the_24h_total_of_cost(api: Api) -> None:
    await api.costs.record(1, "web:lobby", "openai", 10, 5, 0.5, "demo", 1)
    await api.costs.record(2, "web:lobby", "openai", 10, 5, 0.25, None, None)
    status, chart = await api.get("/api/v1/cost")
    assert status == 200
    assert len(chart["days"]) == 14
    assert chart["days"][-1]["date"] == time.strftime("%Y-%m-%d", time.gmtime())
    assert (chart["days"][-1]["usd"], chart["days"][-1]["turns"]) == (0.75, 2)
    assert sum(d["usd"] for d in chart["days"][:-1]) == 0
    assert chart["top_items"] == [{"project": "demo", "item": 1, "usd": 0.5}]
    assert chart["last_24h"] == {"usd": 0.75, "turns": 2}
    assert "Last 24 h: $0.7500 over 2 turns" in await api.costs.report()
    _, week = await api.get("/api/v1/cost?days=7")
    assert len(week["days"]) == 7


async def test_the_routes_follow_the_token_rules_and_me_says_who_is_admin(
    guarded: Api,
) -> None:
    await guarded.engine.create("demo", ItemKind.STORY, "Login page", ALICE)
    for path in ("/api/v1/projects/demo/items/1", "/api/v1/cost", "/api/v1/me"):
        status, _ = await guarded.get(path)
        assert status == 401
    assert await guarded.get("/api/v1/me", "tok-boss") == (
        200,
        {"user": "boss", "admin": True, "can_post": True},
    )
    assert await guarded.get("/api/v1/me", "tok-ann") == (
        200,
        {"user": "ann", "admin": False, "can_post": True},
    )
    status, item = await guarded.get("/api/v1/projects/demo/items/1", "tok-ann")
    assert (status, item["title"]) == (200, "Login page")
