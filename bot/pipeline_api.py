"""The pipeline's read API: ``GET /api/v1/projects`` and ``/api/v1/projects/{name}/items``.

Under ``/api/`` so the bearer-token middleware guards it. Read-only; every answer comes
from the store's materialised tables through the engine (S3).
"""

from __future__ import annotations

from aiohttp import web

from bot.http import error
from pipeline.agent_rows import AgentRun
from pipeline.engine import Engine, ProjectNotFound
from pipeline.model import Item, badge, column, stage_name


def item_json(item: Item) -> dict[str, object]:
    """One item as the API shows it: number, kind, title, stage, column, badge, depends_on."""
    return {
        "number": item.number,
        "kind": item.kind.value,
        "title": item.title,
        "stage": stage_name(item.stage),
        "column": column(item.stage).value,
        "badge": badge(item.stage).value,
        "depends_on": list(item.depends_on),
    }


def agent_json(run: AgentRun | None, queued: bool = False) -> dict[str, object] | None:
    """An item's agent as the board shows it (A1), or None when it never had one.
    ``queued``: the item waits for a slot (the pool's queue): its state says ``queued``."""
    if run is None:
        return None if not queued else {
            "state": "queued", "profile": None, "started": None, "turns": 0, "cost_usd": 0.0,
            "last": None, "attempts": 0, "reason": ""}  # fmt: skip
    state = "queued" if queued else run.state
    return {"state": state, "profile": run.profile, "started": run.started,
            "turns": run.turns, "cost_usd": run.cost_usd, "last": run.heartbeat,
            "attempts": run.attempts, "reason": run.reason[-500:]}  # fmt: skip


def mount(app: web.Application, engine: Engine) -> None:
    """Add the project and item routes to ``app`` (before the server starts)."""

    async def projects(request: web.Request) -> web.Response:
        records = await engine.projects()
        return web.json_response(
            {
                "projects": [
                    {"name": p.name, "path": p.path, "base_branch": p.base_branch,
                     "timezone": p.timezone, "stack": p.stack, "sandbox": p.sandbox,
                     "remote": p.remote, "qa": p.qa, "gates": [list(g) for g in p.gates]}
                    for p in records
                ]
            }
        )  # fmt: skip

    async def items(request: web.Request) -> web.Response:
        name = request.match_info["name"]
        try:
            await engine.project(name)
        except ProjectNotFound as err:
            return error(404, str(err))
        agents = {run.item: run for run in await engine.store.agent_runs(name)}
        return web.json_response(
            {
                "items": [
                    {**item_json(i), "agent": agent_json(agents.get(i.number))}
                    for i in await engine.items(name)
                ]
            }
        )

    app.router.add_get("/api/v1/projects", projects)
    app.router.add_get("/api/v1/projects/{name}/items", items)
