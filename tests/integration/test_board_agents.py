"""The live board follows the agent pool (A1): the SSE frame gives each item its agent and
the slots in use, and a new frame comes when an agent starts, is queued or is stopped
(agent ops do not pass the engine's listeners, so the pool wakes the streams itself)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiohttp

from bot import board_api
from bot.http import HttpServer, build_app
from bot.metrics import Metrics
from config import load_settings
from pipeline.transitions import Move
from tests.integration.agent_env import ALICE, PROJECT, agent_env
from tests.integration.test_board_api import Board


def states(frame: Any) -> dict[int, str | None]:
    if not isinstance(frame, dict):  # a keepalive comment
        return {}
    return {i["number"]: i["agent"] and i["agent"]["state"] for i in frame["items"]}


async def test_the_board_stream_shows_agents_start_queue_and_stop(
    tmp_path: Path, monkeypatch: Any
) -> None:
    monkeypatch.setenv("FAKE_AGENT_MODE", "hang")
    async with agent_env(tmp_path, monkeypatch, max_agents=1) as env:
        cart, till = await env.story("Add a cart"), await env.story("Add a till")
        app = build_app(Metrics(), dict, load_settings(None, {}))
        watch = board_api.mount(app, env.engine, agents=env.pool)
        server = HttpServer(app, "127.0.0.1", 0)
        board = Board(env.engine, server, watch, await server.start())
        try:
            async with aiohttp.ClientSession() as session:
                frames = board.stream(session, f"/api/v1/projects/{PROJECT}/events")
                _, first = await anext(frames)
                assert states(first) == {1: None, 2: None}
                assert first["agents"] == {"busy": 0, "max": 1}

                await env.engine.apply(PROJECT, cart.number, Move("coding"), ALICE)
                await env.engine.apply(PROJECT, till.number, Move("coding"), ALICE)
                async for _, frame in frames:  # both in Coding: one runs, one waits
                    if states(frame) == {1: "pending", 2: "queued"} or states(frame) == {
                        1: "running",
                        2: "queued",
                    }:
                        assert frame["agents"] == {"busy": 1, "max": 1}
                        assert frame["items"][1]["agent"]["profile"] is None
                        break

                said = await env.pool.stop_item(PROJECT, cart.number, ALICE)
                assert said.startswith("Stopped the agent on #1")
                async for _, frame in frames:  # the slot goes to #2; #1 shows stopped
                    if states(frame).get(2) in ("pending", "running"):
                        assert states(frame)[1] == "failed"
                        assert frame["items"][0]["agent"]["reason"].startswith("stopped")
                        assert frame["agents"] == {"busy": 1, "max": 1}
                        break
                await env.pool.stop_item(PROJECT, till.number, ALICE)
                async for _, frame in frames:
                    if states(frame) and frame["agents"]["busy"] == 0:
                        assert states(frame) == {1: "failed", 2: "failed"}
                        break
        finally:
            await server.aclose()
