"""Agents in a real ``musher run`` (A1, A4, R6, R14): an item moved to Coding from chat gets
an agent; SIGTERM parks it (its process is gone); the next start resumes it once."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.integration.agent_env import FAKE_AGENT, make_repo
from tests.integration.daemon import DaemonProcess
from tests.integration.test_agent_pool import alive

MakeDaemon = Callable[..., DaemonProcess]


def agents_config(repo: Path) -> str:
    command = json.dumps([sys.executable, str(FAKE_AGENT)])
    return (
        f'[projects]\ndefault = "shop"\nroot = "{repo.parent}"\n'
        f'[[projects.entry]]\nname = "shop"\npath = "{repo}"\n'
        f'[agents]\nmax_agents = 1\n[[agents.profile]]\nname = "coder"\ncommand = {command}\n'
    )


def calls(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def wait(check: Callable[[], Any], timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := check():
            return value
        time.sleep(0.1)
    raise AssertionError("timed out")


def test_sigterm_parks_a_running_agent_and_the_restart_resumes_it_once(
    tmp_path: Path, make_daemon: MakeDaemon, monkeypatch: Any
) -> None:
    repo = make_repo(tmp_path / "projects" / "shop")
    (tmp_path / "calls").mkdir()
    monkeypatch.setenv("FAKE_AGENT_DIR", str(tmp_path / "calls"))
    monkeypatch.setenv("FAKE_AGENT_MODE", "hang")
    record = tmp_path / "calls" / "calls.jsonl"
    daemon = make_daemon(extra=agents_config(repo), agents=True).start()
    daemon.post("lobby", "new story Add a cart")
    daemon.post("lobby", "move 1 coding")
    [first] = wait(lambda: calls(record))
    wait(lambda: daemon.items()[0]["agent"] and daemon.items()[0]["agent"]["state"] == "running")

    assert daemon.terminate() == 0
    assert not alive(first["pid"])

    monkeypatch.setenv("FAKE_AGENT_MODE", "commit")
    daemon.start()
    wait(lambda: daemon.items()[0]["stage"] == "qa")
    assert [c["argv"][-2:] for c in calls(record)][1:] == [["--resume", first["session"]]]
    wait(lambda: any("#1 agent coder: gates passed → qa" in t for t in daemon.bot_texts("lobby")))
    assert daemon.terminate() == 0
