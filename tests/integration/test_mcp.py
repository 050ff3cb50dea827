"""``musher mcp`` as a real stdio MCP server, spoken to by the official MCP client."""

from __future__ import annotations

import os
import sys
from collections.abc import AsyncIterator, Iterator
from typing import Any, TextIO

import pytest
from aiohttp import web
from mcp.client.session import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client

from bot.commands.args import NoArgs
from bot.commands.core import register_core
from bot.commands.registry import CommandContext, Permission, Registry
from bot.http import HttpServer
from bot.llm.base import TurnRequest
from bot.mcp_bridge import McpBridge
from bot.messages import Reply, Session
from bot.tools import tool_caller, tools_for


@pytest.fixture
def errlog() -> Iterator[TextIO]:
    """Where the MCP server subprocess's stderr goes (kept out of the test output)."""
    with open(os.devnull, "w") as sink:
        yield sink


@pytest.fixture
async def bridge() -> AsyncIterator[McpBridge]:
    bridge = McpBridge()
    app = web.Application()
    bridge.mount(app)
    server = HttpServer(app, "127.0.0.1", 0)
    bridge.url = await server.start()
    yield bridge
    await server.aclose()


def turn(admin: bool) -> tuple[TurnRequest, list[str]]:
    registry = Registry()
    register_core(registry)
    calls: list[str] = []

    @registry.command("purge", summary="Purge", usage="purge", args=NoArgs, destructive=True)
    async def purge(ctx: CommandContext, args: NoArgs) -> Reply:
        calls.append(ctx.sender)
        return Reply("purged")

    @registry.command(
        "whoami", summary="Who", usage="whoami", args=NoArgs, permission=Permission.USER
    )
    async def whoami(ctx: CommandContext, args: NoArgs) -> Reply:
        return Reply(f"{ctx.sender} in {ctx.session}")

    ctx = CommandContext(Session.of("web:lobby"), "alice", admin, via="tool")
    request = TurnRequest(
        "web:lobby", "p", (), tools_for(registry, admin), tool_caller(registry, ctx)
    )
    return request, calls


async def session_for(config: dict[str, Any]) -> Any:
    server = config["mcpServers"]["musher"]
    return StdioServerParameters(
        command=server["command"], args=server["args"], env={**os.environ, **server["env"]}
    )


async def test_claude_sees_the_senders_commands_and_runs_them_as_the_sender(
    bridge: McpBridge, errlog: TextIO
) -> None:
    request, calls = turn(admin=False)
    config = bridge.config_for(request)
    assert config is not None
    params = await session_for(config)
    async with (
        stdio_client(params, errlog=errlog) as (read, write),
        ClientSession(read, write) as client,
    ):
        await client.initialize()
        names = {tool.name for tool in (await client.list_tools()).tools}
        assert {"help", "ambient", "cost", "whoami"} <= names
        assert "purge" not in names and "stop" not in names
        result = await client.call_tool("whoami", {})
        assert result.content[0].text == "alice in web:lobby"  # type: ignore[union-attr]
        refused = await client.call_tool("purge", {})
        assert "needs an admin" in refused.content[0].text  # type: ignore[union-attr]
    assert calls == []


async def test_a_released_turn_token_is_refused(bridge: McpBridge, errlog: TextIO) -> None:
    request, _ = turn(admin=True)
    config = bridge.config_for(request)
    assert config is not None
    bridge.release("web:lobby")
    assert bridge.active() == 0
    params = await session_for(config)
    async with (
        stdio_client(params, errlog=errlog) as (read, write),
        ClientSession(read, write) as client,
    ):
        await client.initialize()
        result = await client.call_tool("help", {})
        assert result.is_error
        assert "401" in result.content[0].text  # type: ignore[union-attr]


def test_musher_mcp_without_a_daemon_explains() -> None:
    import subprocess

    env = {k: v for k, v in os.environ.items() if not k.startswith("MUSHER_MCP")}
    result = subprocess.run(
        [sys.executable, "-m", "bot", "mcp"], capture_output=True, text=True, env=env, timeout=30
    )
    assert result.returncode == 2
    assert "started by the daemon" in result.stdout
