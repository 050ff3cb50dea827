"""``musher mcp``: a stdio MCP server that offers the running daemon's commands as tools.

A CLI provider (``claude -p``) starts it through ``--mcp-config`` with ``MUSHER_MCP_URL`` and
a turn-scoped ``MUSHER_MCP_TOKEN``; every list and call goes back to the daemon, which runs
the command as the room's sender. With ``MUSHER_MCP_PERMISSION=1`` it also offers
:data:`PERMISSION_TOOL`, the CLI's ``--permission-prompt-tool``, which waits (without a
time limit of its own) while the room decides. Nothing here holds state.
"""

from __future__ import annotations

import os
from typing import Any

import anyio
import httpx
import mcp_types as types
from mcp.server.lowlevel import Server
from mcp.server.stdio import stdio_server

PERMISSION_TOOL = "permission"
_PERMISSION_SCHEMA = {
    "type": "object",
    "properties": {
        "tool_name": {"type": "string"},
        "input": {"type": "object"},
        "tool_use_id": {"type": "string"},
    },
    "required": ["tool_name", "input"],
}


def build_server(client: httpx.AsyncClient, permission: bool = False) -> Server[Any]:
    async def list_tools(ctx: Any, params: Any) -> types.ListToolsResult:
        response = await client.get("/mcp/v1/tools")
        response.raise_for_status()
        tools = [types.Tool.model_validate(t) for t in response.json()["tools"]]
        if permission:
            summary = "Asks the chat room whether a tool use may go ahead (the CLI calls it)."
            tools.append(types.Tool(name=PERMISSION_TOOL, description=summary,
                                    input_schema=_PERMISSION_SCHEMA))  # fmt: skip
        return types.ListToolsResult(tools=tools)

    async def call_tool(ctx: Any, params: types.CallToolRequestParams) -> types.CallToolResult:
        arguments = params.arguments or {}
        if permission and params.name == PERMISSION_TOOL:
            response = await client.post("/mcp/v1/permission", json=arguments, timeout=None)
        else:
            response = await client.post(
                "/mcp/v1/call", json={"name": params.name, "arguments": arguments}
            )
        if response.status_code != 200:
            text = f"musher refused the call: HTTP {response.status_code} {response.text}"
            return types.CallToolResult(content=[types.TextContent(text=text)], is_error=True)
        if permission and params.name == PERMISSION_TOOL:
            return types.CallToolResult(content=[types.TextContent(text=response.text)])
        text = str(response.json()["text"])
        return types.CallToolResult(content=[types.TextContent(text=text)])

    return Server("musher", on_list_tools=list_tools, on_call_tool=call_tool)


async def serve() -> None:
    url = os.environ["MUSHER_MCP_URL"]
    token = os.environ["MUSHER_MCP_TOKEN"]
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=60) as client:
        server = build_server(client, os.environ.get("MUSHER_MCP_PERMISSION") == "1")
        async with stdio_server() as (read_stream, write_stream):
            await server.run(read_stream, write_stream, server.create_initialization_options())


def main() -> int:
    if not os.environ.get("MUSHER_MCP_URL") or not os.environ.get("MUSHER_MCP_TOKEN"):
        print("musher mcp is started by the daemon for an LLM turn; it needs MUSHER_MCP_URL")
        return 2
    anyio.run(serve)
    return 0
