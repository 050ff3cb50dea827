"""The REAL ``claude`` CLI as a coding agent (A1, A2), offline against the fake Anthropic API:
its Bash tool commits one file in the item's worktree, the gates pass, the item reaches Qa.
Skips without the CLI (fails in CI)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from config.agents import DEFAULT_COMMAND, AgentProfile
from pipeline.agents.naming import branch_name
from pipeline.transitions import Move
from tests.fakes.anthropic_messages import AnthropicMessagesServer
from tests.integration.agent_env import ALICE, PROJECT, agent_env, git_out
from tests.integration.test_real_claude import FOREIGN, real_claude

COMMIT = (
    "BASH[echo made > made.txt && git add made.txt && git -c user.name=Claude"
    " -c user.email=claude@example.org commit -q -m made-by-claude]"
)


@pytest.fixture
async def server() -> AsyncIterator[AnthropicMessagesServer]:
    async with AnthropicMessagesServer() as running:
        yield running


async def test_the_real_claude_cli_commits_one_file_as_a_coding_agent(
    tmp_path: Path, monkeypatch: Any, server: AnthropicMessagesServer
) -> None:
    claude = real_claude()
    for name in FOREIGN:
        monkeypatch.delenv(name, raising=False)
    home = tmp_path / "home"
    home.mkdir()
    for key, value in {
        "ANTHROPIC_BASE_URL": server.url, "ANTHROPIC_API_KEY": "test", "HOME": str(home),
        "CLAUDE_CONFIG_DIR": str(home / ".claude"), "TMPDIR": str(home),
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1", "DISABLE_AUTOUPDATER": "1",
    }.items():  # fmt: skip
        monkeypatch.setenv(key, value)
    profile = AgentProfile(
        name="claude", command=[claude, *DEFAULT_COMMAND[1:], "--allowedTools=Bash"]
    )
    async with agent_env(
        tmp_path, monkeypatch, profiles=[profile], gates=[("test", "-f", "made.txt")]
    ) as env:
        item = await env.story("Make a file", body=f"Please {COMMIT}")

        await env.engine.apply(PROJECT, item.number, Move("coding"), ALICE)
        await env.settle(lambda: env.stage_is(item.number, "qa"))

        log = git_out(env.repo, "log", "--format=%s", f"main..{branch_name(PROJECT, 1)}")
        assert log == "made-by-claude"
        run = await env.store.agent_run(PROJECT, item.number)
        assert run is not None and run.state == "completed" and run.session_id
        assert any("tool Bash" in line for line in env.pool.logs(PROJECT, 1, 50))
