"""The daemon side of MCP: turn-scoped tokens that let a CLI's MCP server call our commands.

When a ``claude-cli`` turn starts, :meth:`McpBridge.config_for` mints a random token bound to
that turn's tools and ``call_tool`` (so the model acts with exactly the batch's rights) and
returns the ``--mcp-config`` that starts ``musher mcp`` with it. The stdio server calls back
to ``/mcp/v1/tools`` and ``/mcp/v1/call`` with that token; the token dies with the turn.
A turn that may use the CLI's own tools (L7) also gets the ``permission`` tool, which the CLI
calls (``--permission-prompt-tool``) before each use: ``/mcp/v1/permission`` asks the room and
answers in the CLI's format, ``{"behavior": "allow", "updatedInput": …}`` or
``{"behavior": "deny", "message": …}``.
"""

from __future__ import annotations

import hmac
import secrets
import sys
from collections import defaultdict
from typing import Any

from aiohttp import web

from bot.http import error, read_json
from bot.http_guard import bearer
from bot.llm.base import TurnRequest

SERVER_NAME = "musher"


class McpBridge:
    def __init__(self, url: str = "") -> None:
        self.url = url  # set once the HTTP server listens
        self._turns: dict[str, TurnRequest] = {}
        self._by_session: defaultdict[str, set[str]] = defaultdict(set)

    def config_for(self, request: TurnRequest) -> dict[str, Any] | None:
        """The ``--mcp-config`` object for ``request``'s turn, or None when it has no tools."""
        asks = request.ask_permission is not None
        if not (request.tools or asks) or request.call_tool is None or not self.url:
            return None
        token = secrets.token_urlsafe(32)
        self._turns[token] = request
        self._by_session[request.session].add(token)
        env = {"MUSHER_MCP_URL": self.url, "MUSHER_MCP_TOKEN": token}
        if asks:
            env["MUSHER_MCP_PERMISSION"] = "1"
        server = {"command": sys.executable, "args": ["-m", "bot", "mcp"], "env": env}
        return {"mcpServers": {SERVER_NAME: server}}

    def release(self, session: str) -> None:
        """Revoke every token of ``session``'s turns (called when its turn ends)."""
        for token in self._by_session.pop(session, set()):
            self._turns.pop(token, None)

    def active(self) -> int:
        return len(self._turns)

    def mount(self, app: web.Application) -> None:
        app.router.add_get("/mcp/v1/tools", self._tools)
        app.router.add_post("/mcp/v1/call", self._call)
        app.router.add_post("/mcp/v1/permission", self._permission)

    def _turn(self, request: web.Request) -> TurnRequest | None:
        given = bearer(request)
        if not given:
            return None
        for token, turn in self._turns.items():
            if hmac.compare_digest(token.encode(), given.encode()):
                return turn
        return None

    async def _tools(self, request: web.Request) -> web.Response:
        turn = self._turn(request)
        if turn is None:
            return error(401, "unknown or expired turn token")
        tools = [
            {"name": t.name, "description": t.description, "input_schema": t.parameters}
            for t in turn.tools
        ]
        return web.json_response({"tools": tools})

    async def _call(self, request: web.Request) -> web.Response:
        turn = self._turn(request)
        if turn is None or turn.call_tool is None:
            return error(401, "unknown or expired turn token")
        body = await read_json(request, 1_048_576)
        if isinstance(body, web.Response):
            return body
        name, arguments = body.get("name"), body.get("arguments") or {}
        if not isinstance(name, str) or not isinstance(arguments, dict):
            return error(400, 'expected {"name": str, "arguments": object}')
        return web.json_response({"text": await turn.call_tool(name, arguments)})

    async def _permission(self, request: web.Request) -> web.Response:
        turn = self._turn(request)
        if turn is None or turn.ask_permission is None:
            return error(401, "unknown or expired turn token")
        body = await read_json(request, 1_048_576)
        if isinstance(body, web.Response):
            return body
        tool, tool_input = body.get("tool_name"), body.get("input")
        if not isinstance(tool, str) or not isinstance(tool_input, dict):
            return error(400, 'expected {"tool_name": str, "input": object}')
        verdict = await turn.ask_permission(tool, tool_input)
        if verdict.allow:
            return web.json_response({"behavior": "allow", "updatedInput": tool_input})
        return web.json_response({"behavior": "deny", "message": verdict.message or "Denied."})
