"""The claude-cli provider against the fake ``claude`` (tests/fakes/fake_claude.py)."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from bot.db import Database
from bot.llm.base import (
    Done,
    Failed,
    TextDelta,
    ToolCall,
    ToolResult,
    TurnEvent,
    TurnRequest,
    Usage,
)
from bot.llm.claude_cli import RESUME_NOTICE, ClaudeCliProvider
from bot.llm.claude_sessions import ClaudeSessions, ensure_schema
from bot.procs import is_alive
from config.models import ClaudeCliConfig
from tests.fakes.room_steer import RoomSteer

FAKES = Path(__file__).parent.parent / "fakes"
FAKE_CLAUDE = [sys.executable, str(FAKES / "fake_claude.py")]

MakeProvider = Callable[..., ClaudeCliProvider]


class Fake:
    """The fake CLI's state dir: what it was called with, and the pids it started."""

    def __init__(self, state: Path) -> None:
        self.state = state

    def calls(self) -> list[dict[str, Any]]:
        path = self.state / "calls.jsonl"
        return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []

    def pids(self) -> list[int]:
        pids = json.loads((self.state / "pids.json").read_text())
        return [pids["pid"], pids["grandchild"]]


@pytest.fixture
async def sessions(tmp_path: Path) -> AsyncIterator[ClaudeSessions]:
    db = await Database.open(tmp_path / "musher.db")
    await ensure_schema(db)
    yield ClaudeSessions(db)
    await db.aclose()


@pytest.fixture
def fake(tmp_path: Path) -> Fake:
    return Fake(tmp_path / "fake-claude")


@pytest.fixture
async def make_provider(
    sessions: ClaudeSessions, fake: Fake, tmp_path: Path
) -> AsyncIterator[MakeProvider]:
    made: list[ClaudeCliProvider] = []

    def make(**overrides: Any) -> ClaudeCliProvider:
        env = {"FAKE_CLAUDE_STATE": str(fake.state), **overrides.pop("env", {})}
        config = ClaudeCliConfig(
            command=overrides.pop("command", FAKE_CLAUDE), env=env, **overrides
        )
        provider = ClaudeCliProvider(config, sessions, state_dir=tmp_path / "state")
        made.append(provider)
        return provider

    yield make
    for provider in made:
        await provider.aclose()


def request(prompt: str, session: str = "web:a", cwd: Path | None = None) -> TurnRequest:
    return TurnRequest(session=session, prompt=prompt, batch=(), cwd=cwd)


async def turn(
    provider: ClaudeCliProvider, req: TurnRequest, cancel: asyncio.Event | None = None
) -> list[TurnEvent]:
    async with contextlib.aclosing(provider.run(req, cancel or asyncio.Event())) as events:
        return [event async for event in events]


def text(events: list[TurnEvent]) -> str:
    return "".join(e.text for e in events if isinstance(e, TextDelta))


async def test_a_room_resumes_its_own_session_and_another_room_starts_one(
    make_provider: MakeProvider, sessions: ClaudeSessions, fake: Fake
) -> None:
    provider = make_provider()

    first = await turn(provider, request("hello", "web:a"))
    a_id = await sessions.get("web:a")
    second = await turn(provider, request("again", "web:a"))
    other = await turn(provider, request("hi", "web:b"))

    assert text(first) == "[fake turn 1] you said: hello"
    assert text(second) == "[fake turn 2] you said: again"
    assert text(other) == "[fake turn 1] you said: hi"
    argvs = [call["argv"] for call in fake.calls()]
    assert a_id is not None and "--resume" not in argvs[0]
    assert argvs[1][-2:] == ["--resume", a_id]
    assert "--resume" not in argvs[2]
    assert await sessions.get("web:a") == a_id
    assert await sessions.get("web:b") not in (None, a_id)


async def test_the_prompt_arrives_on_stdin_exactly(
    make_provider: MakeProvider, fake: Fake, tmp_path: Path
) -> None:
    prompt = "alice: héllo\n\nbob: two  spaces, a trailing newline\n"
    await turn(make_provider(), request(prompt, cwd=tmp_path))

    call = fake.calls()[0]
    assert call["stdin"] == prompt
    assert call["cwd"] == str(tmp_path)
    assert call["argv"] == ["-p", "--output-format", "stream-json", "--verbose"]


async def test_model_extra_args_and_env_reach_the_cli(
    make_provider: MakeProvider, fake: Fake
) -> None:
    provider = make_provider(
        model="claude-test-9", args=["--max-turns", "4"], env={"MUSHER_TEST_FLAG": "on"}
    )
    await turn(provider, request("hi"))

    call = fake.calls()[0]
    assert call["argv"][-4:] == ["--model", "claude-test-9", "--max-turns", "4"]
    assert call["env"] == {"MUSHER_TEST_FLAG": "on"}


async def test_an_unknown_session_is_replaced_with_one_notice(
    make_provider: MakeProvider, sessions: ClaudeSessions, fake: Fake
) -> None:
    await sessions.set("web:a", "f00dfeed-0000-4000-8000-000000000000")

    events = await turn(make_provider(), request("hello"))

    deltas = [e.text for e in events if isinstance(e, TextDelta)]
    assert deltas == [RESUME_NOTICE, "[fake turn 1] you said: hello"]
    assert isinstance(events[-1], Done)
    assert not any(isinstance(e, Failed) for e in events)
    new_id = await sessions.get("web:a")
    assert new_id not in (None, "f00dfeed-0000-4000-8000-000000000000")
    argvs = [call["argv"] for call in fake.calls()]
    assert "--resume" in argvs[0] and "--resume" not in argvs[1]


async def test_paragraphs_stream_in_order_and_the_result_text_is_not_repeated(
    make_provider: MakeProvider,
) -> None:
    events = await turn(make_provider(), request("PARAS"))

    assert [e.text for e in events if isinstance(e, TextDelta)] == [
        "First para",
        "graph.\n\nSecond paragraph.\n\n",
        "Third ",
        "paragraph.",
    ]
    assert events[-2:] == [Usage(13, 4, 0.0025), Done(None)]


async def test_tool_calls_and_results_are_reported_and_later_text_is_a_new_paragraph(
    make_provider: MakeProvider,
) -> None:
    events = await turn(make_provider(), request("TOOL"))

    assert events == [
        TextDelta("Let me look."),
        ToolCall("toolu_1", "status", {"n": 12}),
        ToolResult("toolu_1", "#12 is in qa"),
        TextDelta("\n\nIt is in QA."),
        Usage(13, 4, 0.0025),
        Done(None),
    ]


async def test_an_error_result_subtype_fails_the_turn(make_provider: MakeProvider) -> None:
    events = await turn(make_provider(), request("ERROR_MAX_TURNS"))

    last = events[-1]
    assert isinstance(last, Failed)
    assert "error_max_turns" in last.message and "Reached maximum turns" in last.message
    assert not any(isinstance(e, Done) for e in events)


async def test_a_crash_fails_with_the_exit_code_and_the_stderr_tail(
    make_provider: MakeProvider,
) -> None:
    events = await turn(make_provider(), request("CRASH"))

    assert len(events) == 1 and isinstance(events[0], Failed)
    lines = events[0].message.splitlines()
    assert "claude exited with code 3." in lines
    assert "crash line 25" in lines and "crash line 6" in lines
    assert "crash line 5" not in lines  # only the last 20 lines


async def test_output_that_is_not_stream_json_is_reported(make_provider: MakeProvider) -> None:
    events = await turn(make_provider(), request("GARBAGE"))

    assert isinstance(events[-1], Failed)
    assert "this is not json" in events[-1].message


async def test_a_cli_that_cannot_start_fails_the_turn(make_provider: MakeProvider) -> None:
    events = await turn(make_provider(command=["/nonexistent/claude"]), request("hi"))

    assert len(events) == 1 and isinstance(events[0], Failed)
    assert "Could not start the claude CLI (/nonexistent/claude)" in events[0].message


async def test_the_executable_wrapper_is_a_drop_in_claude(make_provider: MakeProvider) -> None:
    provider = make_provider(
        command=[str(FAKES / "claude")], env={"FAKE_CLAUDE_PYTHON": sys.executable}
    )
    events = await turn(provider, request("hi"))

    assert text(events) == "[fake turn 1] you said: hi"


async def start_sleeping_turn(
    provider: ClaudeCliProvider, cancel: asyncio.Event, seen: list[TurnEvent]
) -> asyncio.Task[None]:
    """A turn whose CLI (and its grandchild) run until killed; returns once it is talking."""
    talking = asyncio.Event()

    async def consume() -> None:
        async with contextlib.aclosing(provider.run(request("SLEEP"), cancel)) as events:
            async for event in events:
                seen.append(event)
                talking.set()

    task = asyncio.create_task(consume())
    await asyncio.wait_for(talking.wait(), 10)
    return task


async def wait_for_pids(fake: Fake) -> list[int]:
    async with asyncio.timeout(10):
        while not (fake.state / "pids.json").exists():  # noqa: ASYNC110 (another process)
            await asyncio.sleep(0.01)
    return fake.pids()


async def test_cancelling_the_turn_kills_the_tree_before_it_unwinds(
    make_provider: MakeProvider, fake: Fake, sessions: ClaudeSessions
) -> None:
    seen: list[TurnEvent] = []
    task = await start_sleeping_turn(make_provider(), asyncio.Event(), seen)
    pids = await wait_for_pids(fake)
    assert all(is_alive(pid) for pid in pids)

    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    assert [pid for pid in pids if is_alive(pid)] == []
    assert seen == [TextDelta("working")]
    assert await sessions.get("web:a") is not None  # stored at init: the next turn resumes


async def test_a_timeout_around_the_turn_kills_the_tree(
    make_provider: MakeProvider, fake: Fake
) -> None:
    provider = make_provider()
    seen: list[TurnEvent] = []
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(None) as deadline:
            async with contextlib.aclosing(provider.run(request("SLEEP"), asyncio.Event())) as it:
                async for event in it:
                    seen.append(event)
                    pids = await wait_for_pids(fake)
                    deadline.reschedule(asyncio.get_running_loop().time() + 0.2)

    assert [pid for pid in pids if is_alive(pid)] == []
    assert seen == [TextDelta("working")]


async def test_setting_cancel_kills_the_tree_and_ends_the_turn_quietly(
    make_provider: MakeProvider, fake: Fake
) -> None:
    cancel = asyncio.Event()
    seen: list[TurnEvent] = []
    task = await start_sleeping_turn(make_provider(), cancel, seen)
    pids = await wait_for_pids(fake)

    cancel.set()
    await asyncio.wait_for(task, 10)

    assert [pid for pid in pids if is_alive(pid)] == []
    assert seen == [TextDelta("working")]


async def test_aclose_kills_running_turns_which_then_fail(
    make_provider: MakeProvider, fake: Fake
) -> None:
    provider = make_provider()
    seen: list[TurnEvent] = []
    task = await start_sleeping_turn(provider, asyncio.Event(), seen)
    pids = await wait_for_pids(fake)

    await provider.aclose()

    assert [pid for pid in pids if is_alive(pid)] == []
    await asyncio.wait_for(task, 10)
    assert seen[-1] == Failed("Stopped: musher is shutting down.")


async def test_children_left_behind_by_a_finished_turn_are_killed(
    make_provider: MakeProvider, fake: Fake
) -> None:
    events = await asyncio.wait_for(turn(make_provider(), request("LINGER")), 10)

    assert isinstance(events[-1], Done)
    assert [pid for pid in fake.pids() if is_alive(pid)] == []


async def test_reset_forgets_the_room_conversation(
    make_provider: MakeProvider, sessions: ClaudeSessions, fake: Fake
) -> None:
    provider = make_provider()
    await turn(provider, request("hello"))
    await provider.reset("web:a")
    events = await turn(provider, request("hello again"))

    assert await sessions.get("web:a") is not None
    assert text(events) == "[fake turn 1] you said: hello again"
    assert "--resume" not in fake.calls()[1]["argv"]


async def test_the_mcp_config_is_passed_as_a_private_file_removed_after_the_turn(
    sessions: ClaudeSessions, fake: Fake, tmp_path: Path
) -> None:
    config = ClaudeCliConfig(
        command=FAKE_CLAUDE, args=["--max-turns", "2"], env={"FAKE_CLAUDE_STATE": str(fake.state)}
    )
    mcp = {"mcpServers": {"musher": {"type": "http", "url": "http://127.0.0.1:1/mcp"}}}
    provider = ClaudeCliProvider(
        config, sessions, mcp_config=lambda req: mcp, state_dir=tmp_path / "state"
    )

    events = await turn(provider, request("hi"))

    assert isinstance(events[-1], Done)
    call = fake.calls()[0]
    assert call["mcp_config"] == [mcp]
    option = call["argv"][4]
    assert option.startswith(f"--mcp-config={tmp_path / 'state'}")
    assert call["argv"][5] == "--allowedTools=mcp__musher"  # its tools run without a prompt
    assert call["argv"][6:] == ["--max-turns", "2"]
    assert list((tmp_path / "state").iterdir()) == []


async def test_steer_writes_what_the_room_says_into_the_running_cli(
    make_provider: MakeProvider, fake: Fake
) -> None:
    steer = RoomSteer()
    req = dataclasses.replace(request("alice: STEER check #3"), steer=steer)
    events: list[TurnEvent] = []
    async with contextlib.aclosing(make_provider().run(req, asyncio.Event())) as stream:
        async for event in stream:
            events.append(event)
            if isinstance(event, ToolCall):  # the CLI is at a tool boundary
                steer.say("bob: and #4")
    assert text(events) == "[fake turn 1] you said: alice: STEER check #3 | then: bob: and #4"
    assert isinstance(events[-1], Done) and steer.closed
    [call] = fake.calls()  # one process, one answer for both
    assert call["argv"][-2:] == ["--input-format", "stream-json"]
    assert call["stdin"] == "alice: STEER check #3"


async def test_what_the_cli_reads_after_its_answer_is_answered_in_a_new_paragraph(
    make_provider: MakeProvider, fake: Fake
) -> None:
    steer = RoomSteer()
    steer.say("bob: one more thing")  # already waiting when the CLI starts
    req = dataclasses.replace(request("alice: hi"), steer=steer)
    events = await turn(make_provider(), req)
    assert text(events) == (
        "[fake turn 1] you said: alice: hi\n\n[fake turn 2] you said: bob: one more thing"
    )
    assert isinstance(events[-1], Done) and len(fake.calls()) == 1


async def test_what_arrives_after_the_answer_is_left_for_the_follow_up(
    make_provider: MakeProvider,
) -> None:
    steer = RoomSteer()
    req = dataclasses.replace(request("alice: hi"), steer=steer)
    events = await turn(make_provider(), req)
    steer.say("bob: too late for this turn")
    assert text(events) == "[fake turn 1] you said: alice: hi"
    assert steer.closed and steer.queued == ["bob: too late for this turn"]
