"""LLM turns through the running daemon against fake OpenAI-compatible and Anthropic servers."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from tests.fakes.llm_server import FakeLlmServer, HttpError, Malformed, Reply, ToolUse
from tests.integration.daemon import DaemonProcess

MakeDaemon = Callable[..., DaemonProcess]


def llm_config(provider: str, server: FakeLlmServer) -> str:
    url = server.openai_url if provider == "openai" else server.url
    section = f'[llm.{provider}]\nbase_url = "{url}"\napi_key = "k-123"\n'
    return f'\n[llm]\nprovider = "{provider}"\n{section}'


def make(make_daemon: MakeDaemon, provider: str, server: FakeLlmServer) -> DaemonProcess:
    daemon = make_daemon(window_ms=100)
    text = daemon.config.read_text().replace('[llm]\nprovider = "echo"\n', "")
    daemon.config.write_text(text + llm_config(provider, server))
    return daemon


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
async def test_a_tool_call_runs_a_command_and_the_answer_streams_in_paragraphs(
    make_daemon: MakeDaemon, provider: str
) -> None:
    async with FakeLlmServer() as server:
        server.push(
            ToolUse("help", {}),
            Reply(chunks=("Here are ", "the commands.\n\n", "Ask me anything.")),
        )
        daemon = make(make_daemon, provider, server)
        await asyncio.to_thread(daemon.start)
        await asyncio.to_thread(daemon.post, "lobby", "what can you do?")
        replies = await asyncio.to_thread(daemon.wait_for, "lobby", 2)
        assert replies == ["Here are the commands.", "Ask me anything."]
        second = server.requests[1].body
        assert "Commands:" in str(second)  # the `help` output went back to the model
        assert "alice: what can you do?" in str(server.requests[0].body)
        log = daemon.log_text()
        assert "k-123" not in log
        await asyncio.to_thread(daemon.post, "lobby", "cost")
        cost = (await asyncio.to_thread(daemon.wait_for, "lobby", 3))[2]
        assert "over 1 turns (22 tokens in, 14 out)" in cost  # both API calls of the turn
        assert "web:lobby" in cost


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
async def test_rate_limits_are_retried_and_errors_reach_the_room(
    make_daemon: MakeDaemon, provider: str
) -> None:
    async with FakeLlmServer() as server:
        server.push(HttpError(429, "slow down", retry_after="1"), Reply(chunks=("fine now",)))
        server.push(HttpError(500, "boom"), HttpError(500, "boom"), HttpError(500, "boom"))
        server.push(HttpError(500, "boom"), Malformed("bad_json"))
        daemon = make(make_daemon, provider, server)
        await asyncio.to_thread(daemon.start)
        await asyncio.to_thread(daemon.post, "lobby", "one")
        assert await asyncio.to_thread(daemon.wait_for, "lobby", 1) == ["fine now"]
        await asyncio.to_thread(daemon.post, "lobby", "two")
        replies = await asyncio.to_thread(daemon.wait_for, "lobby", 2, 30)
        assert replies[1].startswith("⚠️") and "500" in replies[1], replies
        await asyncio.to_thread(daemon.post, "lobby", "three")
        replies = await asyncio.to_thread(daemon.wait_for, "lobby", 4, 30)
        assert replies[2] == "Hel"  # what streamed before the broken line is kept
        assert replies[3].startswith("⚠️"), replies


async def test_the_tools_offered_follow_the_senders_rights(make_daemon: MakeDaemon) -> None:
    async with FakeLlmServer() as server:
        server.push(ToolUse("ambient", {"mode": "on"}), Reply(chunks=("done",)))
        daemon = make(make_daemon, "openai", server)
        text = daemon.config.read_text()
        users = 'users = { root = "tok-root-1", alice = "tok-alice-1" }'
        daemon.config.write_text(f'{text}\n[transports.web]\n{users}\nadmins = ["root"]\n')
        daemon.token = "tok-root-1"  # reads the history
        await asyncio.to_thread(daemon.start)
        with daemon.client(headers={"Authorization": "Bearer tok-alice-1"}) as alice:
            posted = await asyncio.to_thread(
                alice.post, "/api/v1/rooms/lobby/messages", json={"text": "turn on ambient"}
            )
        assert posted.json()["sender"] == "alice"
        assert await asyncio.to_thread(daemon.wait_for, "lobby", 1) == ["done"]
        tools = {t["function"]["name"] for t in server.requests[0].body["tools"]}
        assert {"help", "ambient", "cost", "status", "move"} <= tools
        assert not {"stop", "reset", "purge"} & tools  # purge is for admins; alice is not one
        assert "Ambient mode on" in str(server.requests[1].body)  # ran as alice, result returned
