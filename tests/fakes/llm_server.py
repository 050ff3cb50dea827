"""A fake of the OpenAI chat completions and Anthropic Messages streaming APIs, scripted.

Each request takes the next script from the queue (:meth:`FakeLlmServer.push`) and answers it
in the API it was sent to, with the real SSE shapes: ``Reply`` (text in chunks), ``ToolUse``
(a streamed tool call), ``HttpError`` (a status with the API's error JSON and an optional
``Retry-After``), ``Malformed`` (bad JSON in a data line, or a stream cut before its end) and
``Slow`` (one chunk, then keep-alive comments until the client disconnects). Every request is
recorded in :attr:`FakeLlmServer.requests`; a client hanging up mid-stream sets
:attr:`FakeLlmServer.disconnected`. An empty queue answers 418 ``no script queued``.

    async with FakeLlmServer() as fake:
        fake.push(Reply(("Hel", "lo")))
        ... OpenAIConfig(base_url=fake.openai_url) / AnthropicConfig(base_url=fake.url) ...
"""

from __future__ import annotations

import asyncio
import json
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Literal

from aiohttp import web

from tests.fakes.runner import close_runner

Api = Literal["openai", "anthropic"]


@dataclass(frozen=True)
class Reply:
    chunks: tuple[str, ...] = ("Hello", ", world", "!")
    input_tokens: int = 11
    output_tokens: int = 7
    cost_usd: float | None = None  # OpenAI-compatible gateways (OpenRouter) report usage.cost


@dataclass(frozen=True)
class ToolUse:
    name: str
    arguments: dict[str, Any] = field(default_factory=dict)
    id: str = "call_1"
    text: str = ""


@dataclass(frozen=True)
class HttpError:
    status: int
    message: str
    retry_after: str | None = None


@dataclass(frozen=True)
class Malformed:
    kind: Literal["bad_json", "truncated"] = "bad_json"


@dataclass(frozen=True)
class Slow:
    first: str = "Hello"
    seconds: float = 20.0


Script = Reply | ToolUse | HttpError | Malformed | Slow


@dataclass(frozen=True)
class Recorded:
    api: Api
    headers: dict[str, str]
    body: dict[str, Any]


class FakeLlmServer:
    """Both APIs on ``127.0.0.1:<free port>``; use as an async context manager."""

    def __init__(self) -> None:
        self.scripts: deque[Script] = deque()
        self.requests: list[Recorded] = []
        self.disconnected = asyncio.Event()
        self.url = ""
        self._runner: web.AppRunner | None = None

    @property
    def openai_url(self) -> str:
        return self.url + "/v1"

    def push(self, *scripts: Script) -> None:
        self.scripts.extend(scripts)

    async def __aenter__(self) -> FakeLlmServer:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._openai)
        app.router.add_post("/v1/messages", self._anthropic)
        self._runner = web.AppRunner(app, shutdown_timeout=1.0)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        host, port = self._runner.addresses[0][:2]
        self.url = f"http://{host}:{port}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._runner is not None:
            await close_runner(self._runner)

    async def _openai(self, request: web.Request) -> web.StreamResponse:
        return await self._answer(request, "openai")

    async def _anthropic(self, request: web.Request) -> web.StreamResponse:
        return await self._answer(request, "anthropic")

    async def _answer(self, request: web.Request, api: Api) -> web.StreamResponse:
        body = await request.json()
        self.requests.append(Recorded(api, dict(request.headers), body))
        script = self.scripts.popleft() if self.scripts else HttpError(418, "no script queued")
        if isinstance(script, HttpError):
            return _error_response(api, script)
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        render = _openai_events if api == "openai" else _anthropic_events
        try:
            async for chunk in render(script):
                await response.write(chunk.encode())
        except ConnectionError:
            self.disconnected.set()
            return response
        except asyncio.CancelledError:
            self.disconnected.set()
            raise
        await response.write_eof()
        return response


def _error_response(api: Api, script: HttpError) -> web.Response:
    if api == "openai":
        payload: dict[str, Any] = {
            "error": {"message": script.message, "type": "invalid_request_error", "code": None}
        }
    else:
        payload = {"type": "error", "error": {"type": "api_error", "message": script.message}}
    headers = {"Retry-After": script.retry_after} if script.retry_after else {}
    return web.json_response(payload, status=script.status, headers=headers)


def _sse(data: dict[str, Any] | str, event: str | None = None) -> str:
    text = data if isinstance(data, str) else json.dumps(data)
    return (f"event: {event}\n" if event else "") + f"data: {text}\n\n"


async def _keep_alive(seconds: float) -> AsyncIterator[str]:
    """SSE comments every 20 ms: each write fails fast once the client has gone."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while loop.time() < deadline:
        await asyncio.sleep(0.02)
        yield ": ping\n\n"


def _oa_chunk(delta: dict[str, Any], finish: str | None = None) -> str:
    choice = {"index": 0, "delta": delta, "finish_reason": finish}
    return _sse({"id": "chatcmpl-fake", "object": "chat.completion.chunk", "choices": [choice]})


def _oa_end(
    finish: str, input_tokens: int = 11, output_tokens: int = 7, cost_usd: float | None = None
) -> list[str]:
    usage: dict[str, object] = {"prompt_tokens": input_tokens, "completion_tokens": output_tokens}
    if cost_usd is not None:
        usage["cost"] = cost_usd
    tail = _sse({"id": "chatcmpl-fake", "choices": [], "usage": usage})
    return [_oa_chunk({}, finish), tail, _sse("[DONE]")]


async def _openai_events(script: Script) -> AsyncIterator[str]:
    if isinstance(script, Reply):
        for i, piece in enumerate(script.chunks):
            yield _oa_chunk(({"role": "assistant"} if i == 0 else {}) | {"content": piece})
        for chunk in _oa_end("stop", script.input_tokens, script.output_tokens, script.cost_usd):
            yield chunk
    elif isinstance(script, ToolUse):
        if script.text:
            yield _oa_chunk({"role": "assistant", "content": script.text})
        args = json.dumps(script.arguments)
        head = {"index": 0, "id": script.id, "type": "function"}
        yield _oa_chunk({"tool_calls": [head | {"function": {"name": script.name}}]})
        for part in (args[: len(args) // 2], args[len(args) // 2 :]):
            yield _oa_chunk({"tool_calls": [{"index": 0, "function": {"arguments": part}}]})
        for chunk in _oa_end("tool_calls"):
            yield chunk
    elif isinstance(script, Malformed):
        yield _oa_chunk({"role": "assistant", "content": "Hel"})
        if script.kind == "bad_json":
            yield 'data: {"choices": [ oops\n\n'
    elif isinstance(script, Slow):
        yield _oa_chunk({"role": "assistant", "content": script.first})
        async for ping in _keep_alive(script.seconds):
            yield ping
        for chunk in _oa_end("stop"):
            yield chunk


def _an(event: str, **fields: Any) -> str:
    return _sse({"type": event, **fields}, event)


def _an_start(input_tokens: int = 11) -> str:
    usage = {"input_tokens": input_tokens, "output_tokens": 1}
    message = {"id": "msg_fake", "type": "message", "role": "assistant", "content": []}
    return _an("message_start", message=message | {"usage": usage})


def _an_text(index: int, chunks: tuple[str, ...]) -> list[str]:
    events = [_an("content_block_start", index=index, content_block={"type": "text", "text": ""})]
    for piece in chunks:
        delta = {"type": "text_delta", "text": piece}
        events.append(_an("content_block_delta", index=index, delta=delta))
    return [*events, _an("content_block_stop", index=index)]


def _an_end(stop: str, output_tokens: int = 7) -> list[str]:
    delta = {"stop_reason": stop, "stop_sequence": None}
    usage = {"output_tokens": output_tokens}
    return [_an("message_delta", delta=delta, usage=usage), _an("message_stop")]


async def _anthropic_events(script: Script) -> AsyncIterator[str]:
    if isinstance(script, Reply):
        events = [
            _an_start(script.input_tokens),
            _an("ping"),
            *_an_text(0, script.chunks),
            *_an_end("end_turn", script.output_tokens),
        ]
    elif isinstance(script, ToolUse):
        events = [_an_start(), *(_an_text(0, (script.text,)) if script.text else [])]
        index = 1 if script.text else 0
        block = {"type": "tool_use", "id": script.id, "name": script.name, "input": {}}
        events.append(_an("content_block_start", index=index, content_block=block))
        args = json.dumps(script.arguments)
        for part in (args[: len(args) // 2], args[len(args) // 2 :]):
            delta = {"type": "input_json_delta", "partial_json": part}
            events.append(_an("content_block_delta", index=index, delta=delta))
        events += [_an("content_block_stop", index=index), *_an_end("tool_use")]
    elif isinstance(script, Malformed):
        events = [_an_start(), *_an_text(0, ("Hel",))[:2]]
        if script.kind == "bad_json":
            events.append("event: content_block_delta\ndata: {oops\n\n")
    else:
        assert isinstance(script, Slow)
        for chunk in [_an_start(), *_an_text(0, (script.first,))[:2]]:
            yield chunk
        async for ping in _keep_alive(script.seconds):
            yield ping
        events = [_an("content_block_stop", index=0), *_an_end("end_turn")]
    for chunk in events:
        yield chunk
