"""Approvals in the room (L7) with the fake ``claude`` CLI asking musher's permission route.

The fake CLI (``ASK[<command>]``) asks where the real one calls its permission prompt tool;
answers come in through intake and the room's lane while the turn waits on the dispatcher.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.db import Database
from bot.llm.base import Provider
from bot.llm.claude_cli import ClaudeCliProvider
from bot.llm.claude_sessions import ClaudeSessions
from bot.messages import Session
from config.models import ClaudeCliConfig
from pipeline import audit
from tests.fakes.chat_room import SESSION, ChatRoom, MakeProvider, McpConfigFor, chat_room

FAKE = Path(__file__).parents[1] / "fakes" / "claude"


def fake_cli(tmp_path: Path) -> MakeProvider:
    state = tmp_path / "claude-state"
    state.mkdir(exist_ok=True)
    env = {"FAKE_CLAUDE_STATE": str(state), "FAKE_CLAUDE_PYTHON": sys.executable}

    def make(mcp_config: McpConfigFor, db: Database) -> Provider:
        config = ClaudeCliConfig(command=[str(FAKE)], env=env)
        return ClaudeCliProvider(config, ClaudeSessions(db), mcp_config, state_dir=tmp_path / "s")

    return make


@pytest.fixture
async def room(tmp_path: Path) -> AsyncIterator[ChatRoom]:
    async with chat_room(tmp_path, fake_cli(tmp_path)) as made:
        yield made


async def ask(room: ChatRoom, command: str, sender: str = "alice") -> str:
    """``sender`` asks for ``command``; the question the room gets."""
    await room.say(sender, f"please ASK[{command}]")
    return await room.wait_for("🔐")


async def test_approve_runs_the_command_once_and_a_non_sender_is_refused(room: ChatRoom) -> None:
    question = await ask(room, "touch made.txt")
    assert "#1" in question and "alice" in question and "Bash: `touch made.txt`" in question
    assert "`approve 1`" in question and "`deny 1 [reason]`" in question

    await room.say("bob", "approve")
    assert "only alice (who asked) or an admin" in room.texts()[-1]
    assert not (room.project / "made.txt").exists()

    await room.say("alice", "approve")
    assert await room.wait_for("ran: touch made.txt")
    assert (room.project / "made.txt").exists()
    await room.idle()

    await room.say("alice", "approvals")
    listing = room.texts()[-1]
    assert "approved once — Bash: `touch made.txt` (by alice)" in listing
    assert "Nothing is waiting" in listing


async def test_deny_refuses_with_the_reason_and_an_admin_may_answer(room: ChatRoom) -> None:
    await ask(room, "touch nope.txt")
    await room.say("carol", "deny 1 not today")
    assert await room.wait_for("refused: Denied by carol: not today.")
    assert not (room.project / "nope.txt").exists()


async def test_no_answer_in_time_denies_and_the_turn_is_told(room: ChatRoom) -> None:
    await ask(room, "touch late.txt")
    await room.clock.advance(120)
    assert "got no answer and was denied" in await room.wait_for("⌛")
    assert await room.wait_for("refused: No answer in the room within 120 s: denied.")
    assert not (room.project / "late.txt").exists()


async def test_approve_always_is_a_room_setting_until_reset(room: ChatRoom) -> None:
    await ask(room, "touch one.txt")
    await room.say("alice", "approve always")
    assert "`Bash(touch *)` is now allowed in this room" in room.texts()[-1]
    await room.wait_for("ran: touch one.txt")
    await room.idle()
    assert await room.core.engine.room_tools(SESSION) == ("Bash(touch *)",)
    rows = await room.db.read("SELECT payload, origin FROM ops WHERE kind = 'room.set'")
    [(payload, origin)] = [r for r in rows if "tools" in json.loads(r[0])]
    assert json.loads(payload)["tools"] == ["Bash(touch *)"]
    assert json.loads(origin)["user"] == "alice"

    seen = len(room.texts())
    await room.say("bob", "please ASK[touch two.txt]")
    assert await room.wait_for("ran: touch two.txt", after=seen)
    assert not any("🔐" in t for t in room.texts()[seen:])
    await room.idle()

    await room.say("alice", "reset")
    assert await room.core.engine.room_tools(SESSION) == ()
    await ask_again(room, "touch three.txt")
    assert (await audit.verify(room.db)).ok


async def ask_again(room: ChatRoom, command: str) -> None:
    seen = len(room.texts())
    await room.say("alice", f"please ASK[{command}]")
    assert "🔐" in await room.wait_for("🔐", after=seen)


async def test_stop_denies_what_is_pending(room: ChatRoom) -> None:
    await ask(room, "touch stopped.txt")
    await room.say("alice", "stop")
    assert "Stopped." in room.texts()
    await room.idle()
    assert room.core.approvals.pending(Session.of(SESSION)) == []
    assert not (room.project / "stopped.txt").exists()
    await room.say("alice", "approvals")
    assert "denied by stop — Bash: `touch stopped.txt`" in room.texts()[-1]


async def test_paths_out_of_the_project_are_refused_before_asking(
    room: ChatRoom, tmp_path: Path
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (room.project / "link").symlink_to(outside)
    for command in ("touch ../escape.txt", "touch link/escape.txt", f"touch {outside}/x"):
        seen = len(room.texts())
        await room.say("alice", f"please ASK[{command}]")
        refusal = await room.wait_for("refused:", after=seen)
        assert "outside the project directory" in refusal
        assert not any("🔐" in t for t in room.texts()[seen:])
        await room.idle()
    assert list(outside.iterdir()) == []


async def test_several_pending_questions_are_numbered(room: ChatRoom) -> None:
    desk, session = room.core.approvals, Session.of(SESSION)
    senders = frozenset({"alice"})
    first = asyncio.create_task(
        desk.ask(session, senders, room.project, "Edit", {"file_path": "a"})
    )
    second = asyncio.create_task(desk.ask(session, senders, room.project, "Write", {"path": "b"}))
    await room.wait_for("#2")
    await room.say("alice", "approve")
    assert "Several requests are waiting (#1, #2)" in room.texts()[-1]
    await room.say("alice", "deny 2")
    await room.say("alice", "approve #1")
    assert (await first).allow and not (await second).allow
    await room.say("alice", "approve 1")
    assert room.texts()[-1] == "Nothing is waiting for approval in this room."


async def test_project_mode_reads_without_asking_but_never_outside(tmp_path: Path) -> None:
    async with chat_room(tmp_path, fake_cli(tmp_path), tools="project") as room:
        desk, session, who = room.core.approvals, Session.of(SESSION), frozenset({"alice"})
        (room.project / "a.txt").write_text("a\n")
        read = await desk.ask(session, who, room.project, "Read", {"file_path": "a.txt"})
        assert read.allow
        outside = await desk.ask(session, who, room.project, "Read", {"file_path": "/etc/hosts"})
        assert not outside.allow and "outside the project directory" in outside.message
        assert room.texts() == []  # nobody was asked
        edit = asyncio.create_task(desk.ask(session, who, room.project, "Edit", {"file_path": "a"}))
        assert "Edit: `a`" in await room.wait_for("🔐")
        await room.say("alice", "approve")
        assert (await edit).allow
