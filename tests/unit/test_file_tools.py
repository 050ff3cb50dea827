"""The HTTP providers' read-only file tools (L7) against a temp project with a symlink out."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from bot.llm.base import ToolResult, TurnRequest
from tests.fakes.llm_server import FakeLlmServer, Reply, ToolUse
from tests.unit import test_llm_http as llm
from tests.unit.test_llm_http import MakeProvider, collect, request

# The HTTP provider tests' fixtures: both APIs, the fake server, history, recorded sleeps.
api, fake, history, make, sleep = llm.api, llm.fake, llm.history, llm.make, llm.sleep


@pytest.fixture
def project(tmp_path: Path) -> Path:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("hello secret\n")
    root = tmp_path / "project"
    (root / "src").mkdir(parents=True)
    (root / "README.md").write_text("hello readme\nsecond line\n")
    (root / "src" / "app.py").write_text("print('hello app')\n")
    (root / "link").symlink_to(outside)
    (root / "secret-link.txt").symlink_to(outside / "secret.txt")
    return root


def turn(project: Path, access: str = "ask") -> TurnRequest:
    async def call_tool(name: str, arguments: dict[str, Any]) -> str:
        return f"command {name}"

    return request(cwd=project, tool_access=access, call_tool=call_tool)


def results(events: list[Any]) -> list[str]:
    return [e.text for e in events if isinstance(e, ToolResult)]


async def test_the_file_tools_read_grep_and_list_inside_the_project_only(
    fake: FakeLlmServer, make: MakeProvider, project: Path
) -> None:
    fake.push(
        ToolUse("read_file", {"path": "README.md"}, id="c1"),
        ToolUse("read_file", {"path": "link/secret.txt"}, id="c2"),
        ToolUse("read_file", {"path": "../outside/secret.txt"}, id="c3"),
        ToolUse("read_file", {"path": "secret-link.txt"}, id="c4"),
        ToolUse("grep_files", {"pattern": "hello"}, id="c5"),
        ToolUse("list_files", {}, id="c6"),
        ToolUse("list_files", {"path": "/etc"}, id="c7"),
        Reply(("Done.",)),
    )
    events = await collect(make(), turn(project))

    offered = {t.get("name") or t["function"]["name"] for t in fake.requests[0].body["tools"]}
    assert {"read_file", "grep_files", "list_files"} <= offered
    readme, via_link, dotdot, file_link, grep, listing, etc = results(events)
    assert readme == "    1\thello readme\n    2\tsecond line"
    for refused in (via_link, dotdot, file_link, etc):
        assert refused.startswith("Refused:") and "outside the project directory" in refused
    assert grep.splitlines() == ["README.md:1: hello readme", "src/app.py:1: print('hello app')"]
    assert listing.splitlines() == ["README.md", "src/"]


async def test_no_file_tools_when_the_room_uses_commands_only(
    fake: FakeLlmServer, make: MakeProvider, project: Path
) -> None:
    fake.push(ToolUse("read_file", {"path": "README.md"}), Reply(("ok",)))
    events = await collect(make(), turn(project, access="commands"))
    assert "tools" not in fake.requests[0].body  # no commands were offered, and no files
    assert results(events) == ["command read_file"]  # just an unknown name for the commands
