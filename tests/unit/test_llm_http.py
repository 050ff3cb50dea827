"""The HTTP providers (openai, anthropic) against a fake of both APIs over a real socket."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from bot.db import Database
from bot.llm.anthropic import AnthropicWire
from bot.llm.base import (
    Done,
    Failed,
    TextDelta,
    Tool,
    ToolCall,
    ToolResult,
    TurnEvent,
    TurnRequest,
    Usage,
)
from bot.llm.chat import MAX_TOOL_ROUNDS, NO_TOOLS_TEXT, ChatProvider
from bot.llm.history import History, ensure_schema
from bot.llm.http_retry import RetryPolicy
from bot.llm.openai import OpenAIWire
from bot.sse import iter_lines, iter_sse
from config.models import AnthropicConfig, OpenAIConfig
from tests.fakes.llm_server import FakeLlmServer, HttpError, Malformed, Reply, Slow, ToolUse

KEY = "sk-test-do-not-leak-4242"
STATUS_TOOL = Tool(
    "status",
    "Show the items of the project.",
    {"type": "object", "properties": {"n": {"type": "integer"}}},
)


class RecordingSleep:
    """Stands in for asyncio.sleep: records each wait and returns at once."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


MakeProvider = Callable[..., ChatProvider]


@pytest.fixture
async def fake() -> AsyncIterator[FakeLlmServer]:
    async with FakeLlmServer() as server:
        yield server


@pytest.fixture
async def history(tmp_path: Path) -> AsyncIterator[History]:
    db = await Database.open(tmp_path / "musher.db")
    await ensure_schema(db)
    yield History(db)
    await db.aclose()


@pytest.fixture
def sleep() -> RecordingSleep:
    return RecordingSleep()


@pytest.fixture(params=["openai", "anthropic"])
def api(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def make(
    api: str, fake: FakeLlmServer, history: History, sleep: RecordingSleep
) -> AsyncIterator[MakeProvider]:
    made: list[ChatProvider] = []

    def build(
        history_size: int = 20, max_retries: int = 3, base_url: str | None = None
    ) -> ChatProvider:
        common: dict[str, Any] = {"api_key": KEY, "max_retries": max_retries, "timeout_s": 5.0}
        provider: ChatProvider
        if api == "openai":
            config = OpenAIConfig(base_url=base_url or fake.openai_url, model="m-1", **common)
            provider = ChatProvider(OpenAIWire(config), history, history_size, sleep=sleep)
        else:
            config_a = AnthropicConfig(base_url=base_url or fake.url, model="m-1", **common)
            provider = ChatProvider(AnthropicWire(config_a), history, history_size, sleep=sleep)
        made.append(provider)
        return provider

    yield build
    for provider in made:
        await provider.aclose()


def request(prompt: str = "alice: hi", **kwargs: Any) -> TurnRequest:
    return TurnRequest(session="room-1", prompt=prompt, batch=(), **kwargs)


async def collect(provider: ChatProvider, turn: TurnRequest) -> list[TurnEvent]:
    return [event async for event in provider.run(turn, asyncio.Event())]


def texts(events: list[TurnEvent]) -> str:
    return "".join(e.text for e in events if isinstance(e, TextDelta))


def user_prompts(body: dict[str, Any]) -> list[str]:
    return [
        m["content"]
        for m in body["messages"]
        if isinstance(m.get("content"), str) and m["role"] == "user"
    ]


def tool_results_sent(api: str, body: dict[str, Any]) -> list[tuple[str, str]]:
    """(call id, text) of every tool result in a request body, in either API's shape."""
    if api == "openai":
        return [(m["tool_call_id"], m["content"]) for m in body["messages"] if m["role"] == "tool"]
    return [
        (block["tool_use_id"], block["content"])
        for m in body["messages"]
        if isinstance(m["content"], list)
        for block in m["content"]
        if block["type"] == "tool_result"
    ]


async def test_text_streams_as_several_deltas(
    api: str, fake: FakeLlmServer, make: MakeProvider
) -> None:
    fake.push(Reply(("Hel", "lo, ", "world")))
    events = await collect(make(), request("alice: hello"))
    deltas = [e for e in events if isinstance(e, TextDelta)]
    assert len(deltas) == 3 and texts(events) == "Hello, world"
    assert events[-2:] == [Usage(11, 7, 0.0), Done()]
    body = fake.requests[0].body
    assert body["stream"] is True and body["model"] == "m-1"
    assert body["messages"][-1] == {"role": "user", "content": "alice: hello"}
    system = body["messages"][0]["content"] if api == "openai" else body["system"]
    assert "musher" in system and "tools" in system
    if api == "openai":
        assert body["stream_options"] == {"include_usage": True}


async def test_tools_are_offered_in_each_api_format(
    api: str, fake: FakeLlmServer, make: MakeProvider
) -> None:
    fake.push(Reply())
    await collect(make(), request(tools=(STATUS_TOOL,)))
    [tool] = fake.requests[0].body["tools"]
    if api == "openai":
        assert tool == {
            "type": "function",
            "function": {
                "name": "status",
                "description": STATUS_TOOL.description,
                "parameters": STATUS_TOOL.parameters,
            },
        }
    else:
        assert tool == {
            "name": "status",
            "description": STATUS_TOOL.description,
            "input_schema": STATUS_TOOL.parameters,
        }


async def test_tool_call_runs_and_its_result_is_sent_back(
    api: str, fake: FakeLlmServer, make: MakeProvider
) -> None:
    calls: list[tuple[str, dict[str, Any]]] = []

    async def call_tool(name: str, arguments: dict[str, Any]) -> str:
        calls.append((name, arguments))
        return "#3 Login page: coding"

    fake.push(ToolUse("status", {"n": 3}, id="call_7", text="Let me look."), Reply(("Done.",)))
    events = await collect(make(), request(tools=(STATUS_TOOL,), call_tool=call_tool))
    assert calls == [("status", {"n": 3})]
    assert ToolCall("call_7", "status", {"n": 3}) in events
    assert ToolResult("call_7", "#3 Login page: coding") in events
    assert texts(events) == "Let me look.Done."
    assert events[-2:] == [Usage(22, 14, 0.0), Done()]
    assert tool_results_sent(api, fake.requests[1].body) == [("call_7", "#3 Login page: coding")]


async def test_tool_call_without_call_tool_answers_not_available(
    api: str, fake: FakeLlmServer, make: MakeProvider
) -> None:
    fake.push(ToolUse("status", {}), Reply(("ok",)))
    events = await collect(make(), request(tools=(STATUS_TOOL,)))
    assert ToolResult("call_1", NO_TOOLS_TEXT) in events and events[-1] == Done()
    assert tool_results_sent(api, fake.requests[1].body) == [("call_1", NO_TOOLS_TEXT)]


async def test_tool_rounds_are_capped(fake: FakeLlmServer, make: MakeProvider) -> None:
    async def call_tool(name: str, arguments: dict[str, Any]) -> str:
        return "again"

    fake.push(*[ToolUse("status", {}) for _ in range(MAX_TOOL_ROUNDS + 5)])
    events = await collect(make(), request(call_tool=call_tool))
    assert len(fake.requests) == MAX_TOOL_ROUNDS + 1
    assert isinstance(events[-1], Failed) and "rounds of tool calls" in events[-1].message
    assert isinstance(events[-2], Usage)


async def test_429_waits_the_retry_after_then_succeeds(
    fake: FakeLlmServer, make: MakeProvider, sleep: RecordingSleep
) -> None:
    fake.push(HttpError(429, "rate limited", retry_after="2"), Reply(("fine",)))
    events = await collect(make(), request())
    assert sleep.waits == [2.0]
    assert texts(events) == "fine" and events[-1] == Done() and len(fake.requests) == 2


async def test_500_is_retried_with_backoff_then_succeeds(
    fake: FakeLlmServer, make: MakeProvider, sleep: RecordingSleep
) -> None:
    fake.push(HttpError(500, "boom"), HttpError(503, "busy"), Reply(("fine",)))
    events = await collect(make(), request())
    assert events[-1] == Done() and len(fake.requests) == 3
    first, second = sleep.waits
    assert 0.25 <= first <= 0.5 and 0.5 <= second <= 1.0


async def test_retries_stop_after_max_retries(
    api: str, fake: FakeLlmServer, make: MakeProvider, sleep: RecordingSleep
) -> None:
    fake.push(*[HttpError(500, "still down") for _ in range(4)])
    events = await collect(make(max_retries=2), request())
    assert events == [Failed(f"{api}: 500 still down")]
    assert len(fake.requests) == 3 and len(sleep.waits) == 2


async def test_400_is_not_retried_and_reports_the_api_message(
    api: str, fake: FakeLlmServer, make: MakeProvider, sleep: RecordingSleep
) -> None:
    fake.push(HttpError(400, "max_tokens: too large"), Reply())
    events = await collect(make(), request())
    assert events == [Failed(f"{api}: 400 max_tokens: too large")]
    assert len(fake.requests) == 1 and sleep.waits == []


async def test_connect_errors_are_retried_then_reported(
    make: MakeProvider, sleep: RecordingSleep
) -> None:
    with socket.socket() as sock:  # a port that was free a moment ago: nothing listens
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    events = await collect(make(max_retries=2, base_url=f"http://127.0.0.1:{port}"), request())
    [failed] = events
    assert isinstance(failed, Failed) and "connection failed" in failed.message
    assert len(sleep.waits) == 2


@pytest.mark.parametrize(
    ("kind", "expected"),
    [("bad_json", "invalid JSON"), ("truncated", "ended before the answer finished")],
)
async def test_malformed_stream_fails_clearly(
    fake: FakeLlmServer, make: MakeProvider, kind: Any, expected: str
) -> None:
    fake.push(Malformed(kind))
    events = await collect(make(), request())
    assert texts(events) == "Hel"
    assert isinstance(events[-1], Failed) and expected in events[-1].message


async def test_second_turn_sends_the_first_turns_messages(
    fake: FakeLlmServer, make: MakeProvider
) -> None:
    provider = make()
    fake.push(Reply(("first answer",)), Reply(("second answer",)))
    await collect(provider, request("alice: one"))
    await collect(provider, request("alice: two"))
    messages = fake.requests[1].body["messages"]
    assert user_prompts(fake.requests[1].body) == ["alice: one", "alice: two"]
    assert "first answer" in str(messages) and "second answer" not in str(messages)


async def test_history_is_trimmed_to_whole_turns(
    api: str, fake: FakeLlmServer, make: MakeProvider
) -> None:
    async def call_tool(name: str, arguments: dict[str, Any]) -> str:
        return "tool says hi"

    provider = make(history_size=2)
    fake.push(Reply(), ToolUse("status", {"n": 1}), Reply(), Reply(), Reply())
    for prompt in ("p1", "p2", "p3", "p4"):  # p2 is a tool turn: 4 messages
        await collect(provider, request(prompt, call_tool=call_tool))
    body = fake.requests[-1].body
    assert user_prompts(body) == ["p2", "p3", "p4"]  # 2 past turns + this one
    assert tool_results_sent(api, body) == [("call_1", "tool says hi")]  # kept with its call


async def test_reset_clears_history(fake: FakeLlmServer, make: MakeProvider) -> None:
    provider = make()
    fake.push(Reply(), Reply())
    await collect(provider, request("before"))
    await provider.reset("room-1")
    await collect(provider, request("after"))
    assert user_prompts(fake.requests[1].body) == ["after"]


async def test_a_failed_turn_is_not_remembered(fake: FakeLlmServer, make: MakeProvider) -> None:
    provider = make()
    fake.push(HttpError(400, "nope"), Reply())
    await collect(provider, request("lost"))
    await collect(provider, request("kept"))
    assert user_prompts(fake.requests[1].body) == ["kept"]


async def test_cancel_mid_stream_closes_the_connection(
    fake: FakeLlmServer, make: MakeProvider
) -> None:
    provider = make()
    fake.push(Slow("Hel"))
    first = asyncio.Event()

    async def consume() -> None:
        async for event in provider.run(request(), asyncio.Event()):
            if isinstance(event, TextDelta):
                first.set()

    task = asyncio.create_task(consume())
    await asyncio.wait_for(first.wait(), 5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await asyncio.wait_for(fake.disconnected.wait(), 5)


async def test_api_key_goes_in_the_right_header_and_never_in_failures(
    api: str, fake: FakeLlmServer, make: MakeProvider
) -> None:
    fake.push(HttpError(401, f"Incorrect API key provided: {KEY}"))
    events = await collect(make(), request())
    headers = {k.lower(): v for k, v in fake.requests[0].headers.items()}
    if api == "openai":
        assert headers["authorization"] == f"Bearer {KEY}"
    else:
        assert headers["x-api-key"] == KEY and headers["anthropic-version"] == "2023-06-01"
    [failed] = events
    assert isinstance(failed, Failed) and failed.message.startswith(f"{api}: 401 ")
    assert KEY not in failed.message


async def test_no_key_sends_no_auth_header(fake: FakeLlmServer, history: History) -> None:
    fake.push(Reply())
    config = OpenAIConfig(base_url=fake.openai_url)
    async with httpx.AsyncClient() as client:
        provider = ChatProvider(OpenAIWire(config), history, 20, client)
        assert (await collect(provider, request()))[-1] == Done()
        await provider.aclose()  # leaves the caller's client open
        assert not client.is_closed
    assert "authorization" not in {k.lower() for k in fake.requests[0].headers}


async def test_history_keeps_whole_turns(history: History) -> None:
    tool_turn: list[dict[str, Any]] = [
        {"role": "user", "content": "a"},
        {"role": "assistant", "tool_calls": []},
        {"role": "tool", "content": "r"},
        {"role": "assistant", "content": "done"},
    ]
    await history.append_turn("s", "openai", [{"role": "user", "content": "old"}], keep_turns=1)
    await history.append_turn("s", "openai", tool_turn, keep_turns=1)
    await history.append_turn("other", "openai", [{"role": "user", "content": "x"}])
    assert await history.load("s", "openai") == tool_turn
    assert await history.load("s", "anthropic") == []
    await history.reset("s")
    assert await history.load("s", "openai") == []
    assert await history.load("other", "openai") == [{"role": "user", "content": "x"}]


def test_a_retry_after_longer_than_the_policy_allows_is_not_waited() -> None:
    policy = RetryPolicy(max_retries=3, max_retry_after_s=60)
    assert policy.delay(0, 120.0) is None and policy.delay(3, 1.0) is None


async def test_sse_lines_split_only_at_line_ends() -> None:
    async def chunks() -> AsyncIterator[bytes]:
        for chunk in (b"event: a\r", b'\ndata: {"t": "x\xe2\x80', b'\xa8y"}\r\n\r\n', b"data: z"):
            yield chunk

    events = [e async for e in iter_sse(iter_lines(chunks()))]
    assert [(e.event, e.data) for e in events] == [("a", '{"t": "x\u2028y"}'), ("message", "z")]


class QueuedSteer:
    """A steer whose room says ``pending`` (if anything) by the time the turn takes it."""

    def __init__(self, pending: str | None = None) -> None:
        self.pending = pending
        self.takes = 0

    async def take(self) -> str | None:
        self.takes += 1
        taken, self.pending = self.pending, None
        return taken

    async def wait(self) -> None:
        await asyncio.Event().wait()

    def close(self) -> None:
        self.pending = None


def steered_text(api: str, body: dict[str, Any]) -> str:
    """The room's words sent after the tool results of the last round."""
    last = body["messages"][-1]
    if api == "openai":
        assert last["role"] == "user" and body["messages"][-2]["role"] == "tool"
        return str(last["content"])
    assert last["role"] == "user" and last["content"][0]["type"] == "tool_result"
    [text] = [b["text"] for b in last["content"] if b["type"] == "text"]
    return str(text)


async def test_a_message_during_a_tool_call_reaches_the_model_after_its_result(
    api: str, fake: FakeLlmServer, make: MakeProvider
) -> None:
    steer = QueuedSteer()

    async def call_tool(name: str, arguments: dict[str, Any]) -> str:
        steer.pending = "bob: and #4 too"  # the room speaks while the tool runs
        return "#3 is in qa"

    fake.push(ToolUse("status", {"n": 3}, id="call_1"), Reply(("Both.",)))
    turn = request(tools=(STATUS_TOOL,), call_tool=call_tool, steer=steer)
    events = await collect(make(), turn)
    assert texts(events) == "Both." and events[-1] == Done()
    assert len(fake.requests) == 2  # one turn, one continuation: no follow-up turn
    second = fake.requests[1].body
    assert tool_results_sent(api, second) == [("call_1", "#3 is in qa")]
    assert steered_text(api, second) == "bob: and #4 too"


async def test_a_tool_call_not_yet_started_is_skipped_for_the_new_message(
    api: str, fake: FakeLlmServer, make: MakeProvider
) -> None:
    ran: list[str] = []

    async def call_tool(name: str, arguments: dict[str, Any]) -> str:
        ran.append(name)
        return "ran"

    steer = QueuedSteer("bob: stop, look at #5 instead")
    fake.push(ToolUse("status", {"n": 3}, id="call_1"), Reply(("Looking at #5.",)))
    turn = request(tools=(STATUS_TOOL,), call_tool=call_tool, steer=steer)
    events = await collect(make(), turn)
    assert ran == []  # superseded before it started
    [result] = [e for e in events if isinstance(e, ToolResult)]
    assert result.id == "call_1" and result.text.startswith("Skipped")
    second = fake.requests[1].body
    assert tool_results_sent(api, second) == [("call_1", result.text)]
    assert steered_text(api, second) == "bob: stop, look at #5 instead"


async def test_an_answer_without_tools_takes_nothing_for_the_follow_up(
    fake: FakeLlmServer, make: MakeProvider
) -> None:
    steer = QueuedSteer("bob: later")
    fake.push(Reply(("Hi.",)))
    events = await collect(make(), request(steer=steer))
    assert texts(events) == "Hi." and events[-1] == Done()
    assert steer.takes == 0 and steer.pending == "bob: later"  # left for the follow-up turn
