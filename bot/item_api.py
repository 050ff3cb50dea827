"""The board's read-only detail routes: one item, its history, the cost chart, and who I am.

- ``GET /api/v1/projects/{name}/items/{n}``: the item in full (text, stage, dependencies,
  pending timers, cost), for the page's detail panel.
- ``GET /api/v1/projects/{name}/items/{n}/history``: its ops from the op log, oldest
  first: who (and from where), what, when.
- ``GET /api/v1/cost``: spend per UTC day over ``?days=`` (default 14) days, the top items
  and the last 24 h total as the ``cost`` command reports it.
- ``GET /api/v1/me``: the page's user and whether they are a web admin (the page shows
  admin-only controls from it; the commands check rights again, C1).

All are under ``/api/``, so the guard middlewares (Host, token, users) cover them. None
writes: changes go through commands posted to a room, like typed ones.
"""

from __future__ import annotations

import re

from aiohttp import web

from bot.access import AccessPolicies
from bot.board_api import board_json
from bot.cost import CostBook
from bot.http import error
from bot.http_guard import identity_of
from pipeline.engine import Engine, ProjectNotFound
from pipeline.history import HistoryEntry
from pipeline.model import Item

_NUMBER = re.compile(r"[1-9][0-9]{0,8}")
NUMBER_RULE = "an item number is 1 to 999999999"
MAX_DAYS = 90


def history_json(entry: HistoryEntry) -> dict[str, object]:
    return {
        "kind": entry.kind,
        "who": entry.origin.describe(),
        "origin": entry.origin.to_dict(),
        "ts": entry.ts,
        "summary": entry.summary,
    }


def mount(app: web.Application, engine: Engine, costs: CostBook, access: AccessPolicies) -> None:
    """Add the routes to ``app`` (before the server starts)."""

    async def find(request: web.Request) -> tuple[str, Item] | web.Response:
        name = request.match_info["name"]
        if not _NUMBER.fullmatch(request.match_info["n"]):
            return error(400, NUMBER_RULE)
        try:
            await engine.project(name)
        except ProjectNotFound as err:
            return error(404, str(err))
        item = await engine.find(name, int(request.match_info["n"]))
        if item is None:
            return error(404, f"{name} has no item #{request.match_info['n']}")
        return name, item

    async def item(request: web.Request) -> web.Response:
        found = await find(request)
        if isinstance(found, web.Response):
            return found
        name, item = found
        related = await engine.items_numbered(name, item.depends_on)
        shown = board_json([item, *related])[0]
        deps = [
            {"number": d["number"], "title": d["title"], "column": d["column"]}
            for d in board_json(related)
        ]
        timers = [
            {"id": t.id, "fire_at": t.fire_at, "action": t.action}
            for t in await engine.store.timers(name)
            if t.item == item.number
        ]
        return web.json_response(
            {
                **shown,
                "body": item.body,
                "epic": item.epic,
                "created_at": item.created_at,
                "updated_at": item.updated_at,
                "dependencies": deps,
                "timers": timers,
                "cost": await costs.item_cost(name, item.number),
            }
        )

    async def history(request: web.Request) -> web.Response:
        found = await find(request)
        if isinstance(found, web.Response):
            return found
        name, item = found
        entries = await engine.history(name, item.number)
        return web.json_response({"history": [history_json(e) for e in entries]})

    async def cost(request: web.Request) -> web.Response:
        given = request.query.get("days", "14")
        if not given.isdecimal() or not 1 <= int(given) <= MAX_DAYS:
            return error(400, f"days is a whole number from 1 to {MAX_DAYS}")
        return web.json_response(await costs.chart(int(given)))

    async def me(request: web.Request) -> web.Response:
        who = identity_of(request)
        policy = access.of("web")
        admin = who.can_post and (policy.everyone_admin or policy.is_admin(who.user or ""))
        return web.json_response({"user": who.user, "admin": admin, "can_post": who.can_post})

    app.router.add_get("/api/v1/projects/{name}/items/{n}", item)
    app.router.add_get("/api/v1/projects/{name}/items/{n}/history", history)
    app.router.add_get("/api/v1/cost", cost)
    app.router.add_get("/api/v1/me", me)
