"""Approvals (L7) with the REAL ``claude`` CLI against the fake Anthropic API.

The fake API answers ``BASH[<command>]`` with a ``Bash`` tool use; the CLI asks musher's
``permission`` MCP tool (``musher mcp``, started by the CLI) before running it, and the room
answers through intake and its lane while the turn waits. Skips without the CLI (fails in CI).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.db import Database
from bot.llm.base import Provider
from bot.llm.claude_cli import ClaudeCliProvider
from bot.llm.claude_sessions import ClaudeSessions
from config.models import ClaudeCliConfig
from tests.fakes.anthropic_messages import AnthropicMessagesServer
from tests.fakes.chat_room import SESSION, ChatRoom, McpConfigFor, chat_room
from tests.integration.test_real_claude import FOREIGN, real_claude


@pytest.fixture
async def room(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[ChatRoom]:
    command = real_claude()
    for name in FOREIGN:
        monkeypatch.delenv(name, raising=False)
    home = tmp_path / "home"
    home.mkdir()
    async with AnthropicMessagesServer() as server:
        env = {
            "ANTHROPIC_BASE_URL": server.url,
            "ANTHROPIC_API_KEY": "test",
            "HOME": str(home),
            "CLAUDE_CONFIG_DIR": str(home / ".claude"),
            "TMPDIR": str(home),
            "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
            "DISABLE_AUTOUPDATER": "1",
        }

        def make(mcp_config: McpConfigFor, db: Database) -> Provider:
            config = ClaudeCliConfig(command=[command], env=env)
            state = tmp_path / "state"
            return ClaudeCliProvider(config, ClaudeSessions(db), mcp_config, state_dir=state)

        async with chat_room(tmp_path, make) as made:
            yield made


async def question(room: ChatRoom, sender: str, command: str) -> str:
    seen = len(room.texts())
    await room.say(sender, f"please BASH[{command}]")
    return await room.wait_for("🔐", after=seen)


async def test_approve_lets_the_command_run_and_only_the_asker_may_answer(
    room: ChatRoom,
) -> None:
    asked = await question(room, "alice", "touch made.txt")
    assert "Bash: `touch made.txt`" in asked and "alice" in asked

    await room.say("bob", "approve")
    assert "only alice (who asked) or an admin" in room.texts()[-1]
    await room.say("alice", "approve")
    assert await room.wait_for("tool said:")
    assert (room.project / "made.txt").exists()


async def test_deny_and_timeout_refuse_the_command(room: ChatRoom) -> None:
    await question(room, "alice", "touch denied.txt")
    await room.say("alice", "deny not now")
    assert await room.wait_for("tool refused: Denied by alice: not now.")
    await room.idle()

    await question(room, "alice", "touch late.txt")
    await room.clock.advance(120)
    assert await room.wait_for("tool refused: No answer in the room within 120 s: denied.")
    assert not (room.project / "denied.txt").exists()
    assert not (room.project / "late.txt").exists()


async def test_approve_always_skips_the_question_next_time(room: ChatRoom) -> None:
    await question(room, "alice", "touch first.txt")
    await room.say("alice", "approve always")
    await room.wait_for("tool said:")
    await room.idle()
    assert await room.core.engine.room_tools(SESSION) == ("Bash(touch *)",)

    seen = len(room.texts())
    await room.say("alice", "please BASH[touch second.txt]")
    await room.wait_for("tool said:", after=seen)
    assert not any("🔐" in text for text in room.texts()[seen:])
    assert (room.project / "second.txt").exists()


async def test_stop_denies_the_waiting_question_and_ends_the_turn(room: ChatRoom) -> None:
    await question(room, "alice", "touch stopped.txt")
    await room.say("alice", "stop")
    assert "Stopped." in room.texts()
    await room.idle()
    await room.say("alice", "approvals")
    assert "denied by stop — Bash: `touch stopped.txt`" in room.texts()[-1]
    assert not (room.project / "stopped.txt").exists()
