"""The agent commands from chat (C2, A1, S5): start, agents, logs, stop N, status N, purge,
cleanup_worktrees, against the fake agent CLI and a real git project."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

from tests.integration.agent_env import FAKE_AGENT, make_repo
from tests.unit.project_env import project_room


def agent_settings(tmp_path: Path, **extra: str) -> dict[str, str]:
    profiles = [
        {"name": "coder", "command": [sys.executable, str(FAKE_AGENT)]},
        {"name": "fixer", "command": [sys.executable, str(FAKE_AGENT)]},
        {"name": "boss", "role": "merger", "command": [sys.executable, str(FAKE_AGENT)]},
    ]
    return {"MUSHER_AGENTS__PROFILE": json.dumps(profiles), "MUSHER_AGENTS__MAX_AGENTS": "1",
            **extra}  # fmt: skip


async def until(check: Any) -> None:
    async with asyncio.timeout(30):
        while not await check():  # noqa: ASYNC110 - polls what the daemon changes
            await asyncio.sleep(0.05)


async def test_start_agents_logs_status_and_stop_from_chat(
    tmp_path: Path, monkeypatch: Any
) -> None:
    monkeypatch.setenv("FAKE_AGENT_MODE", "hang")
    make_repo(tmp_path / "home")
    async with project_room(tmp_path, agent_settings(tmp_path)) as room:
        await room.core.pipeline.bus.start()
        try:
            await room.say("new story Add a cart")
            await room.say("new story Add a till")

            assert (
                await room.say("start 1 boss")
                == "Agent 'boss' is a merger; this item needs a coder."
            )
            assert await room.say("start 1 nobody") == (
                "No agent profile 'nobody'. Profiles: boss, coder, fixer, qa."
            )
            assert (await room.say("start 1", admin=False)) == "Sorry, `start` is for admins only."
            assert await room.say("start 1 fixer") == "Started fixer on #1 (Add a cart)."
            assert "already has an agent" in await room.say("start 1")
            assert await room.say("start 2") == (
                "#2 is queued for coder: all 1 agent slots are busy."
            )

            async def running() -> bool:
                return "running" in await room.say("status 1")

            await until(running)
            listing = await room.say("agents --all")
            assert "#1: fixer running" in listing and "pid " in listing
            assert "#2: queued" in listing
            assert "Agent: queued" in await room.say("status 2")

            async def logged() -> bool:
                return "session" in await room.say("logs 1")

            await until(logged)
            assert (await room.say("stop 1")).startswith("Stopped the agent on #1")
            assert "failed (attempt 0): stopped: by alice" in await room.say("status 1")

            async def second_started() -> bool:
                return "#2: coder running" in await room.say("agents")

            await until(second_started)  # the freed slot goes to the queued item

            async def second_logged() -> bool:
                return "session" in await room.say("logs 2")

            await until(second_logged)
            reply = await room.say("purge 2")
            assert reply.startswith("Purged #2 Add a till from home. Cleared: item row,")
            assert "running agent" in reply and "worktree" in reply
            assert "branch musher/" in reply
            assert await room.say("agents") == "No agents running or queued."
        finally:
            await room.core.pipeline.bus.aclose()


async def test_cleanup_worktrees_is_a_dry_run_until_confirmed(
    tmp_path: Path, monkeypatch: Any
) -> None:
    make_repo(tmp_path / "home")
    async with project_room(tmp_path, agent_settings(tmp_path)) as room:
        await room.core.pipeline.bus.start()
        try:
            await room.say("new story Add a cart")
            await room.say("start 1")

            async def in_qa() -> bool:
                return "Stage: qa" in await room.say("status 1")

            await until(in_qa)
            await room.say("abandon 1")
            tree = room.data_dir / "worktrees"
            assert any(tree.rglob("agent-1.txt"))

            dry = await room.say("cleanup_worktrees")
            assert dry.startswith("Would remove:") and "#1: abandoned" in dry
            assert "branch kept" in dry
            assert any(tree.rglob("agent-1.txt"))
            done = await room.say("cleanup_worktrees --confirm")
            assert done.startswith("Removed:")
            assert not any(tree.rglob("agent-1.txt"))
            assert await room.say("cleanup_worktrees") == "No orphaned worktrees."
        finally:
            await room.core.pipeline.bus.aclose()
