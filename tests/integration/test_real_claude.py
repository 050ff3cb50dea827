"""The claude-cli provider driving the REAL ``claude`` CLI, offline, against a fake Anthropic API.

The CLI comes from npm (``@anthropic-ai/claude-code``). It is looked up in
``$MUSHER_REAL_CLAUDE``, then ``<repo>/.cache/npm/node_modules/.bin/claude`` (where
``npm install --prefix .cache/npm @anthropic-ai/claude-code@2.1.197`` puts it), then
``claude`` on PATH. Without it the tests skip, except in CI (``CI=true``), where they fail.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from bot import procs
from bot.db import Database
from bot.llm import claude_cli
from bot.llm.base import Done, TextDelta, ToolCall, TurnEvent, TurnRequest
from bot.llm.claude_cli import RESUME_NOTICE, ClaudeCliProvider
from bot.llm.claude_sessions import ClaudeSessions, ensure_schema
from config.models import ClaudeCliConfig
from tests.fakes.anthropic_messages import AnthropicMessagesServer, user_texts
from tests.fakes.room_steer import RoomSteer

REPO = Path(__file__).resolve().parents[2]
CACHED = REPO / ".cache" / "npm" / "node_modules" / ".bin" / "claude"
# Variables that would send the CLI elsewhere than the fake server.
FOREIGN = (
    "ANTHROPIC_AUTH_TOKEN",
    "ANTHROPIC_MODEL",
    "CLAUDE_CODE_USE_BEDROCK",
    "CLAUDE_CODE_USE_VERTEX",
    "CLAUDE_CODE_USE_FOUNDRY",
)


def real_claude() -> str:
    """The real CLI's path, or skip (fail in CI) with the reason."""
    explicit = os.environ.get("MUSHER_REAL_CLAUDE")
    if explicit:
        if not os.access(explicit, os.X_OK):
            pytest.fail(f"MUSHER_REAL_CLAUDE={explicit} is not an executable file")
        return explicit
    found = str(CACHED) if os.access(CACHED, os.X_OK) else shutil.which("claude")
    if found:
        return found
    reason = (
        "the real claude CLI is not installed: run `npm install --prefix .cache/npm"
        " @anthropic-ai/claude-code@2.1.197` or set MUSHER_REAL_CLAUDE"
    )
    if os.environ.get("CI") == "true":
        pytest.fail(reason)
    pytest.skip(reason)


class RecordingProvider(ClaudeCliProvider):
    """The provider, remembering the command line of every CLI it starts."""

    argvs: list[list[str]]

    def argv(
        self, resume: str | None, mcp_path: Path | None, tool_access: str = "commands"
    ) -> list[str]:
        argv = super().argv(resume, mcp_path, tool_access)
        self.argvs.append(argv)
        return argv


@pytest.fixture
async def server() -> AsyncIterator[AnthropicMessagesServer]:
    async with AnthropicMessagesServer() as running:
        yield running


@pytest.fixture
async def sessions(tmp_path: Path) -> AsyncIterator[ClaudeSessions]:
    db = await Database.open(tmp_path / "musher.db")
    await ensure_schema(db)
    yield ClaudeSessions(db)
    await db.aclose()


@pytest.fixture
async def provider(
    server: AnthropicMessagesServer,
    sessions: ClaudeSessions,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> AsyncIterator[RecordingProvider]:
    for name in FOREIGN:
        monkeypatch.delenv(name, raising=False)
    home = tmp_path / "home"
    home.mkdir()
    env = {
        "ANTHROPIC_BASE_URL": server.url,
        "ANTHROPIC_API_KEY": "test",
        "HOME": str(home),
        "CLAUDE_CONFIG_DIR": str(home / ".claude"),
        "TMPDIR": str(home),
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
        "DISABLE_AUTOUPDATER": "1",
    }
    config = ClaudeCliConfig(command=[real_claude()], env=env)
    made = RecordingProvider(config, sessions, state_dir=tmp_path / "state")
    made.argvs = []
    yield made
    await made.aclose()


async def turn(
    provider: ClaudeCliProvider, session: str, prompt: str, cwd: Path
) -> list[TurnEvent]:
    req = TurnRequest(session=session, prompt=prompt, batch=(), cwd=cwd)
    async with asyncio.timeout(60):
        async with contextlib.aclosing(provider.run(req, asyncio.Event())) as events:
            return [event async for event in events]


def answer(events: list[TurnEvent]) -> str:
    assert isinstance(events[-1], Done), events[-1]
    return "".join(e.text for e in events if isinstance(e, TextDelta))


async def test_a_room_continues_its_conversation_and_another_room_starts_its_own(
    provider: RecordingProvider,
    server: AnthropicMessagesServer,
    sessions: ClaudeSessions,
    tmp_path: Path,
) -> None:
    first = await turn(provider, "web:a", "alpha-7731", tmp_path)
    first_id = await sessions.get("web:a")
    second = await turn(provider, "web:a", "bravo-2294", tmp_path)
    other = await turn(provider, "web:b", "charlie-5518", tmp_path)

    assert (answer(first), answer(second), answer(other)) == ("pong 1", "pong 2", "pong 1")
    assert first_id is not None
    assert "--resume" not in provider.argvs[0]
    assert provider.argvs[1][-2:] == ["--resume", first_id]
    assert "--resume" not in provider.argvs[2]
    assert await sessions.get("web:a") == first_id
    assert await sessions.get("web:b") not in (None, first_id)

    resumed = server.requests[1]
    texts = user_texts(resumed)
    assert "alpha-7731" in texts[0] and "bravo-2294" in texts[-1]
    replies = [m["content"] for m in resumed["messages"] if m["role"] == "assistant"]
    assert "pong 1" in str(replies)
    assert not any("alpha-7731" in t for t in user_texts(server.requests[2]))


async def test_a_session_the_cli_does_not_know_is_replaced_with_a_notice(
    provider: RecordingProvider, sessions: ClaudeSessions, tmp_path: Path
) -> None:
    lost = str(uuid.uuid4())
    await sessions.set("web:c", lost)

    events = await turn(provider, "web:c", "delta-4410", tmp_path)

    assert answer(events) == RESUME_NOTICE + "pong 1"
    assert provider.argvs[0][-2:] == ["--resume", lost]
    assert await sessions.get("web:c") not in (None, lost)


async def test_a_stopped_turn_leaves_no_claude_process(
    provider: RecordingProvider,
    server: AnthropicMessagesServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    started: list[procs.Process] = []

    async def spawn_and_note(*args: Any, **kwargs: Any) -> procs.Process:
        proc = await procs.spawn(*args, **kwargs)
        started.append(proc)
        return proc

    monkeypatch.setattr(claude_cli, "spawn", spawn_and_note)
    req = TurnRequest(session="web:d", prompt="STALL please", batch=(), cwd=tmp_path)
    events: list[TurnEvent] = []

    async def consume() -> None:
        async with contextlib.aclosing(provider.run(req, asyncio.Event())) as stream:
            events.extend([event async for event in stream])

    task = asyncio.create_task(consume())
    await asyncio.wait_for(server.stalled.wait(), 60)  # the CLI is waiting for the model
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    [proc] = started
    assert proc.returncode is not None
    assert group_members(proc.pid) == []
    assert events == []


def group_members(pgid: int) -> list[int]:
    """Living processes of process group ``pgid``."""
    members = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if os.getpgid(int(entry.name)) == pgid and procs.is_alive(int(entry.name)):
                    members.append(int(entry.name))
    return members


async def test_steer_reaches_the_real_cli_at_its_tool_boundary_in_one_process(
    server: AnthropicMessagesServer,
    sessions: ClaudeSessions,
    tmp_path: Path,
    provider: RecordingProvider,
) -> None:
    config = provider.config.model_copy(update={"args": ["--allowedTools", "Bash"]})
    steering = RecordingProvider(config, sessions, state_dir=tmp_path / "state")
    steering.argvs = []
    steer = RoomSteer()
    req = TurnRequest(
        session="web:s", prompt="alice: BASH[sleep 2]", batch=(), cwd=tmp_path, steer=steer
    )
    events: list[TurnEvent] = []
    try:
        async with asyncio.timeout(60):
            async with contextlib.aclosing(steering.run(req, asyncio.Event())) as stream:
                async for event in stream:
                    events.append(event)
                    if isinstance(event, ToolCall):  # Bash is running: the room speaks
                        steer.say("bob: ALSO-7781")
    finally:
        await steering.aclose()

    assert isinstance(events[-1], Done), events[-1]
    assert len(steering.argvs) == 1 and "stream-json" in steering.argvs[0][-1]
    assert steer.closed and steer.queued == []
    later = [json.dumps(body) for body in server.requests[1:]]
    assert any("ALSO-7781" in body for body in later)  # the model read it in this turn
