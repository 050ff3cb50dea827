"""The agents on the board (A1): each item's ``agent`` in the items list, and an item's
recent agent output (``GET /api/v1/projects/{name}/items/{n}/agent``). Read-only, under
``/api/`` (the bearer-token middleware guards it); state from the ``agent_runs`` table."""

from __future__ import annotations

import re

from aiohttp import web

from bot.http import error
from bot.pipeline_api import agent_json
from pipeline.agents.pool import AgentPool
from pipeline.engine import Engine, ProjectNotFound

MAX_LINES = 200
_NUMBER = re.compile(r"[1-9][0-9]{0,8}")


def mount(app: web.Application, engine: Engine, pool: AgentPool) -> None:
    """Add ``GET /api/v1/projects/{name}/items/{n}/agent`` (``?lines=`` up to 200)."""

    async def agent(request: web.Request) -> web.Response:
        name, given = request.match_info["name"], request.match_info["n"]
        lines = request.query.get("lines", "50")
        if not _NUMBER.fullmatch(given):
            return error(400, "an item number is a whole number from 1 to 999999999")
        if not lines.isdecimal() or not 1 <= int(lines) <= MAX_LINES:
            return error(400, f"lines is a whole number from 1 to {MAX_LINES}")
        try:
            await engine.project(name)
        except ProjectNotFound as err:
            return error(404, str(err))
        item = await engine.find(name, int(given))
        if item is None:
            return error(404, f"{name} has no item #{given}")
        key = (name, item.number, "running")
        run = await engine.store.agent_run(name, item.number)
        queued = pool.queued(name, item.number)
        shown = agent_json(run, queued)
        live = [v for v in pool.views() if (v.project, v.number, v.state) == key]
        if run is not None and shown is not None and live:  # the row lags (heartbeats)
            spent = run.cost_usd + live[0].cost_usd  # earlier runs' and this one's so far
            shown |= {"turns": live[0].turns, "cost_usd": round(spent, 6)}
        return web.json_response({
            "agent": shown, "queued": queued,
            "lines": pool.logs(name, item.number, int(lines)),
        })  # fmt: skip

    app.router.add_get("/api/v1/projects/{name}/items/{n}/agent", agent)
