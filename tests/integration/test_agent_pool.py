"""The agent pool (A1, A2, A4) with the fake agent CLI on real git repositories."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pipeline.agents.naming import branch_name, worktree_path
from pipeline.transitions import Move
from tests.integration.agent_env import ALICE, PROJECT, agent_env, git_out


async def test_an_item_entering_coding_gets_an_agent_whose_commit_reaches_qa(
    tmp_path: Path, monkeypatch: Any
) -> None:
    async with agent_env(tmp_path, monkeypatch) as env:
        item = await env.story("Add a cart")

        await env.engine.apply(PROJECT, item.number, Move("coding"), ALICE)
        await env.settle(lambda: env.stage_is(item.number, "qa"))

        tree = worktree_path(env.data_dir, PROJECT, item.number)
        branch = branch_name(PROJECT, item.number)
        assert git_out(env.repo, "log", "--format=%s", f"main..{branch}") == "fake agent: #1"
        assert git_out(tree, "rev-parse", "--abbrev-ref", "HEAD") == branch
        run = await env.store.agent_run(PROJECT, item.number)
        assert run is not None and (run.state, run.exit_code) == ("completed", 0)
        assert run.cost_usd == 0.01
        assert any("gates passed" in line for _, line in env.said)
        assert len(env.calls()) == 1
