"""One fake OpenAI-compatible LLM shared by every system in the peer benchmark.

``POST /v1/chat/completions`` waits a fixed latency (2 s), then answers in one piece, as SSE
when the request asks for ``stream`` and as one JSON body otherwise. It never asks for a tool,
so every call is one plain answer. Each call is logged (:class:`Call`): when it began and
ended on the loop clock, and which benchmark messages its request carried. Those are found
by their tags (``w1x0r0m3``, see :mod:`bench.peers.analysis`);
the call's room is the room of the tags in its last user message, so history replayed by a
peer does not move a call to another room. The answer text is ``ANSWER <n> ...`` so the
drivers can tell an answer from a peer's own acknowledgements ("queued", "interrupting").

A request whose client hangs up before the answer is written (an interrupted turn) is logged
with ``cancelled=True``. The ``on_call`` and ``on_end`` hooks see each call begin and end.
``GET /v1/models`` lists the one model (some peers probe it); anything else is answered 404
and logged in :attr:`FakeLlm.unknown`.

tests/fakes/llm_server.py is not reused: it scripts answers one by one for tests and has no
latency or per-room log, and bench code must not import tests.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from bench.peers.analysis import Call, tags_in

MODEL = "fake-model"
LATENCY_S = 2.0


def _texts(message: dict[str, Any]) -> str:
    """The text of one chat message whose content is a string or a list of parts."""
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return ""


def call_tags(body: dict[str, Any]) -> tuple[str | None, frozenset[str]]:
    """The room a chat request is for and every message tag it carries.

    The room is that of the last user message with a tag; ``None`` when no user message
    has one (a peer's own housekeeping call, e.g. a title or a memory summary).
    """
    messages = [m for m in body.get("messages", []) if isinstance(m, dict)]
    seen: set[str] = set()
    room: str | None = None
    for message in messages:
        tags = tags_in(_texts(message))
        seen.update(t.tag for t in tags)
        if message.get("role") == "user" and tags:
            room = tags[-1].room
    return room, frozenset(seen)


@dataclass
class FakeLlm:
    """The server; ``async with FakeLlm() as llm`` then ``llm.base_url`` (ends in ``/v1``)."""

    latency_s: float = LATENCY_S
    calls: list[Call] = field(default_factory=list)
    unknown: list[str] = field(default_factory=list)
    on_call: Callable[[Call], None] | None = None
    on_end: Callable[[Call], None] | None = None
    base_url: str = ""
    _runner: web.AppRunner | None = None
    _in_flight: int = 0

    @property
    def in_flight(self) -> int:
        return self._in_flight

    async def __aenter__(self) -> FakeLlm:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_post("/v1/chat/completions", self._complete)
        app.router.add_get("/v1/models", self._models)
        app.router.add_route("*", "/{tail:.*}", self._other)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        host, port = self._runner.addresses[0][:2]
        self.base_url = f"http://{host}:{port}/v1"
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def clear(self) -> None:
        self.calls = []
        self.unknown = []

    async def _models(self, request: web.Request) -> web.Response:
        model = {"id": MODEL, "object": "model", "owned_by": "bench", "context_length": 131072}
        return web.json_response({"object": "list", "data": [model]})

    async def _other(self, request: web.Request) -> web.Response:
        self.unknown.append(f"{request.method} {request.path}")
        return web.json_response({"error": {"message": "not found"}}, status=404)

    async def _complete(self, request: web.Request) -> web.StreamResponse:
        loop = asyncio.get_running_loop()
        body = await request.json()
        room, tags = call_tags(body)
        call = Call(n=len(self.calls) + 1, room=room, tags=tags, start=loop.time())
        self.calls.append(call)
        if self.on_call is not None:
            self.on_call(call)
        self._in_flight += 1
        try:
            await asyncio.sleep(self.latency_s)
            transport = request.transport
            if transport is None or transport.is_closing():
                call.cancelled = True  # the peer hung up: an interrupted turn
                return web.Response(status=499)
            text = f"ANSWER {call.n} for {room or 'no room'}"
            if body.get("stream"):
                return await _stream(request, text)
            return web.json_response(_completion(text))
        except ConnectionError:
            call.cancelled = True  # hung up while the answer was being written
            return web.Response(status=499)
        except asyncio.CancelledError:
            call.cancelled = True
            raise
        finally:
            call.end = loop.time()
            self._in_flight -= 1
            if self.on_end is not None:
                self.on_end(call)


def _completion(text: str) -> dict[str, Any]:
    return {
        "id": "chatcmpl-bench",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": MODEL,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15},
    }


def _chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
    choice = {"index": 0, "delta": delta, "finish_reason": finish}
    data = {
        "id": "chatcmpl-bench",
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": MODEL,
        "choices": [choice],
    }
    return f"data: {json.dumps(data)}\n\n".encode()


async def _stream(request: web.Request, text: str) -> web.StreamResponse:
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await response.prepare(request)
    await response.write(_chunk({"role": "assistant", "content": text}))
    await response.write(_chunk({}, "stop"))
    usage = {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}
    tail = {"id": "chatcmpl-bench", "object": "chat.completion.chunk", "choices": []}
    await response.write(f"data: {json.dumps(tail | {'usage': usage})}\n\n".encode())
    await response.write(b"data: [DONE]\n\n")
    await response.write_eof()
    return response
