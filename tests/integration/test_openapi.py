"""``GET /api/v1/openapi.json``: it lists exactly the routes the daemon mounts, and no
request built from it (valid or garbage) gets a 5xx or leaves a traceback (R12)."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.strategies import DrawFn, composite

from bot import agent_api, board_api, item_api, pipeline_api
from bot.access import AccessPolicies
from bot.cost import CostBook
from bot.db import Database
from bot.feed import RoomFeed
from bot.http import build_app
from bot.journal import Journal
from bot.metrics import Metrics
from bot.openapi import OPENAPI
from bot.schema import DAEMON_SCHEMA
from config import load_settings
from config.agents import AgentsConfig
from pipeline.engine import Engine
from pipeline.keys import NodeKey
from pipeline.store import OpStore
from tests.integration.agent_env import make_pool
from tests.integration.daemon import DaemonProcess
from transports.web.app import WebTransport

MakeDaemon = Callable[..., DaemonProcess]
OPERATIONS = [
    (method.upper(), path, spec)
    for path, item in OPENAPI["paths"].items()
    for method, spec in item.items()
    if method in ("get", "post")
]


async def test_the_document_lists_every_api_route(tmp_path: Path) -> None:
    db = await Database.open(tmp_path / "musher.db", DAEMON_SCHEMA)
    try:
        engine = Engine(await OpStore.open(db, NodeKey.generate()))
        app = build_app(Metrics(), dict, load_settings(None, {}))
        WebTransport(Journal(db), RoomFeed(), 1024).mount(app)
        pipeline_api.mount(app, engine)
        board_api.mount(app, engine)
        item_api.mount(app, engine, CostBook(db), AccessPolicies({}))
        agent_api.mount(app, engine, make_pool(engine, tmp_path, AgentsConfig(), []))
        mounted = {
            (route.method, route.resource.canonical)
            for route in app.router.routes()
            if route.resource is not None
            and route.resource.canonical.startswith("/api/")
            and route.method != "HEAD"
        }
    finally:
        await db.aclose()
    documented = {(method, path) for method, path, _ in OPERATIONS}
    assert mounted == documented


def test_the_daemon_serves_the_document(make_daemon: MakeDaemon) -> None:
    daemon = make_daemon().start()
    with daemon.client() as client:
        assert client.get("/api/v1/openapi.json").json() == json.loads(json.dumps(OPENAPI))


_TEXT = st.text(max_size=24)
_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | _TEXT,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_TEXT, inner, max_size=4),
    max_leaves=12,
)


def _param(schema: dict[str, Any]) -> st.SearchStrategy[str]:
    valid: st.SearchStrategy[str]
    if "pattern" in schema:
        valid = st.from_regex(schema["pattern"], fullmatch=True)
    else:
        valid = st.integers(-(2**70), 2**70).map(str)
    return valid | _TEXT


@composite
def requests(draw: DrawFn) -> dict[str, Any]:
    method, path, spec = draw(st.sampled_from(OPERATIONS))
    item = OPENAPI["paths"][path]
    for param in item.get("parameters", []):
        value = quote(draw(_param(param["schema"])), safe="") or "x"
        path = path.replace("{" + param["name"] + "}", value)
    query = {
        p["name"]: draw(_param(p["schema"]))
        for p in spec.get("parameters", [])
        if p["in"] == "query" and draw(st.booleans())
    }
    body: bytes | None = None
    if method == "POST":
        fields = st.fixed_dictionaries({}, optional={"sender": _TEXT, "text": _TEXT, "id": _JSON})
        body = draw(
            fields.map(lambda d: json.dumps(d).encode())
            | _JSON.map(lambda v: json.dumps(v).encode())
            | st.binary(max_size=64)
        )
    headers = {"Content-Type": draw(st.sampled_from(["application/json", "text/plain"]))}
    if draw(st.booleans()):
        headers["Authorization"] = draw(st.sampled_from(["Bearer nope", "nope", "Basic x"]))
    return {"method": method, "url": path, "params": query, "content": body, "headers": headers}


def test_fuzzing_the_document_never_gets_a_5xx(make_daemon: MakeDaemon) -> None:
    daemon = make_daemon(window_ms=50).start()
    seen: set[int] = set()
    with daemon.client(timeout=httpx.Timeout(10, read=10)) as client:

        @settings(
            max_examples=400,
            deadline=None,
            database=None,
            suppress_health_check=[HealthCheck.too_slow],
        )
        @given(requests())
        def one(request: dict[str, Any]) -> None:
            with client.stream(**request) as response:  # SSE routes: the status is enough
                assert response.status_code < 500, (request, response.status_code)
                seen.add(response.status_code)

        one()
    assert {200, 400} <= seen
    log = daemon.log_text()
    assert "Traceback" not in log and not re.search(r" (ERROR|CRITICAL) ", log), log[-3000:]
