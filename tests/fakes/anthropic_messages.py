"""A fake Anthropic Messages API that the real ``claude`` CLI can talk to offline.

It speaks ``POST /v1/messages`` (JSON, or SSE when ``stream`` is true, in the real event
order: ``message_start``, ``content_block_start``, ``content_block_delta``…,
``content_block_stop``, ``message_delta``, ``message_stop``) and answers deterministically:
``pong <n>`` where ``n`` counts the conversation's user turns that carry text; a request
whose last user turn contains ``STALL`` gets no answer until the server closes. A scripted
tool use: a user turn containing ``BASH[<command>]`` (or ``READ[<path>]``) is answered with a
``tool_use`` block for the CLI's ``Bash`` (``Read``) tool; the request that carries its
``tool_result`` is answered ``tool said: <result text>`` (``tool refused: …`` when the result
is an error), so a test sees what the tool did or why it was refused. Every request
body is kept in :attr:`AnthropicMessagesServer.requests` for assertions; anything else the
CLI asks for (``HEAD /``, token counting, telemetry) gets a harmless answer and is recorded
in :attr:`AnthropicMessagesServer.paths`.
"""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from typing import Any

from aiohttp import web

from tests.fakes.runner import close_runner

_USAGE = {
    "input_tokens": 7,
    "output_tokens": 2,
    "cache_creation_input_tokens": 0,
    "cache_read_input_tokens": 0,
}


_SCRIPT = re.compile(r"\b(BASH|READ)\[([^\]]*)\]")


def tool_results(body: dict[str, Any]) -> list[tuple[str, bool]]:
    """The ``(text, is_error)`` of each tool result in the request's last user message."""
    messages = [m for m in body.get("messages", []) if m.get("role") == "user"]
    content = messages[-1].get("content") if messages else None
    results: list[tuple[str, bool]] = []
    for block in content if isinstance(content, list) else []:
        if isinstance(block, dict) and block.get("type") == "tool_result":
            inner = block.get("content")
            if isinstance(inner, list):
                inner = "\n".join(str(b.get("text", "")) for b in inner if isinstance(b, dict))
            results.append((str(inner or ""), bool(block.get("is_error"))))
    return results


def scripted_reply(body: dict[str, Any]) -> dict[str, Any] | None:
    """The scripted content block for ``body`` (a tool use, or what its result said), if any."""
    results = tool_results(body)
    if results:
        text, is_error = results[-1]
        return {"type": "text", "text": f"tool {'refused' if is_error else 'said'}: {text}"}
    texts = user_texts(body)
    found = _SCRIPT.search(texts[-1]) if texts else None
    if found is None or not body.get("tools"):
        return None
    kind, argument = found.groups()
    tool_input = (
        {"command": argument, "description": "scripted"}
        if kind == "BASH"
        else {"file_path": argument}
    )
    name = "Bash" if kind == "BASH" else "Read"
    return {
        "type": "tool_use",
        "id": "toolu_" + uuid.uuid4().hex[:20],
        "name": name,
        "input": tool_input,
    }


def user_texts(body: dict[str, Any]) -> list[str]:
    """The text of every user message in a request, in order (tool results excluded)."""
    texts: list[str] = []
    for message in body.get("messages", []):
        if message.get("role") != "user":
            continue
        content = message.get("content")
        if isinstance(content, str):
            texts.append(content)
            continue
        parts = [
            block.get("text", "")
            for block in content or []
            if isinstance(block, dict) and block.get("type") == "text"
        ]
        if parts:
            texts.append("\n".join(parts))
    return texts


class AnthropicMessagesServer:
    """An aiohttp server on ``127.0.0.1`` with a free port; ``async with`` starts and stops it."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.paths: list[str] = []
        self.url = ""
        self.stalled = asyncio.Event()
        self._release = asyncio.Event()
        app = web.Application()
        app.router.add_post("/v1/messages", self._messages)
        app.router.add_post("/v1/messages/count_tokens", self._count_tokens)
        app.router.add_route("*", "/{tail:.*}", self._other)
        self._runner = web.AppRunner(app)

    async def start(self) -> str:
        """Listen on a free port and return the base URL (``http://127.0.0.1:<port>``)."""
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        host, port = self._runner.addresses[0][:2]
        self.url = f"http://{host}:{port}"
        return self.url

    async def aclose(self) -> None:
        """Release stalled requests, stop listening and close every connection. Idempotent."""
        self._release.set()
        await close_runner(self._runner)

    async def __aenter__(self) -> AnthropicMessagesServer:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def _other(self, request: web.Request) -> web.StreamResponse:
        self.paths.append(f"{request.method} {request.path}")
        if request.method == "HEAD" or request.path == "/":
            return web.Response(status=200)
        return web.json_response(
            {"type": "error", "error": {"type": "not_found_error"}}, status=404
        )

    async def _count_tokens(self, request: web.Request) -> web.Response:
        self.paths.append(f"POST {request.path}")
        return web.json_response({"input_tokens": 7})

    async def _messages(self, request: web.Request) -> web.StreamResponse:
        self.paths.append(f"POST {request.path}")
        body = await request.json()
        self.requests.append(body)
        texts = user_texts(body)
        if texts and "STALL" in texts[-1]:
            self.stalled.set()
            await self._release.wait()
            return web.Response(status=503)
        block = scripted_reply(body) or {"type": "text", "text": f"pong {len(texts)}"}
        stop = "tool_use" if block["type"] == "tool_use" else "end_turn"
        message_id = "msg_" + uuid.uuid4().hex[:20]
        model = body.get("model", "fake")
        if not body.get("stream"):
            return web.json_response(
                {
                    "id": message_id,
                    "type": "message",
                    "role": "assistant",
                    "model": model,
                    "content": [block],
                    "stop_reason": stop,
                    "stop_sequence": None,
                    "usage": _USAGE,
                }
            )
        return await self._stream(request, message_id, model, block)

    async def _stream(
        self, request: web.Request, message_id: str, model: str, block: dict[str, Any]
    ) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)

        async def event(name: str, data: dict[str, Any]) -> None:
            payload = json.dumps({"type": name, **data})
            await response.write(f"event: {name}\ndata: {payload}\n\n".encode())

        start: dict[str, Any] = {
            "id": message_id,
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {**_USAGE, "output_tokens": 0},
        }
        await event("message_start", {"message": start})
        if block["type"] == "tool_use":
            opened = {**block, "input": {}}
            deltas = [{"type": "input_json_delta", "partial_json": json.dumps(block["input"])}]
        else:
            opened = {"type": "text", "text": ""}
            half = len(block["text"]) // 2
            pieces = (block["text"][:half], block["text"][half:])
            deltas = [{"type": "text_delta", "text": piece} for piece in pieces]
        await event("content_block_start", {"index": 0, "content_block": opened})
        for delta in deltas:
            await event("content_block_delta", {"index": 0, "delta": delta})
        await event("content_block_stop", {"index": 0})
        stop = "tool_use" if block["type"] == "tool_use" else "end_turn"
        delta = {"stop_reason": stop, "stop_sequence": None}
        await event("message_delta", {"delta": delta, "usage": {"output_tokens": 2}})
        await event("message_stop", {})
        await response.write_eof()
        return response
