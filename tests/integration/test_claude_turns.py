"""The daemon running ``claude-cli`` turns with the fake CLI: resume per room, stop, auto."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from bot.procs import is_alive
from tests.integration.daemon import DaemonProcess

MakeDaemon = Callable[..., DaemonProcess]
FAKE = Path(__file__).parents[1] / "fakes" / "claude"


def claude_daemon(make_daemon: MakeDaemon, tmp_path: Path) -> tuple[DaemonProcess, Path]:
    state = tmp_path / "claude-state"
    state.mkdir()
    daemon = make_daemon(window_ms=100)
    text = daemon.config.read_text().replace('[llm]\nprovider = "echo"\n', "")
    env = f'env = {{ FAKE_CLAUDE_STATE = "{state}", FAKE_CLAUDE_PYTHON = "{sys.executable}" }}'
    daemon.config.write_text(
        text + f'\n[llm]\nprovider = "claude-cli"\n[llm.claude_cli]\ncommand = ["{FAKE}"]\n{env}\n'
    )
    return daemon, state


def calls(state: Path) -> list[dict[str, object]]:
    lines = (state / "calls.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines]


def test_each_room_keeps_its_own_claude_conversation(
    make_daemon: MakeDaemon, tmp_path: Path
) -> None:
    daemon, state = claude_daemon(make_daemon, tmp_path)
    daemon.start()
    daemon.post("a", "hello")
    assert daemon.wait_for("a", 1) == ["[fake turn 1] you said: alice: hello"]
    daemon.post("a", "again")
    assert daemon.wait_for("a", 2)[1] == "[fake turn 2] you said: alice: again"
    daemon.post("b", "other room")
    assert daemon.wait_for("b", 1) == ["[fake turn 1] you said: alice: other room"]
    argvs = [c["argv"] for c in calls(state)]
    assert "--resume" not in argvs[0] and "--resume" in argvs[1]  # type: ignore[operator]
    assert "--resume" not in argvs[2]  # type: ignore[operator]
    mcp = [a for a in argvs[0] if a.startswith("--mcp-config=")]  # type: ignore[union-attr]
    assert mcp, "claude gets musher's commands over MCP"
    # the turn runs in the room's project: here the default one, the daemon's directory
    assert {c["cwd"] for c in calls(state)} == {str(Path.cwd())}


def test_stop_kills_the_claude_process_tree(make_daemon: MakeDaemon, tmp_path: Path) -> None:
    daemon, state = claude_daemon(make_daemon, tmp_path)
    daemon.start()
    daemon.post("lobby", "please SLEEP")
    deadline = time.monotonic() + 15
    while not (state / "pids.json").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    pids = json.loads((state / "pids.json").read_text())
    daemon.post("lobby", "stop")
    replies = daemon.wait_for("lobby", 2)
    assert "Stopped." in replies
    assert not is_alive(pids["pid"]) and not is_alive(pids["grandchild"])


def test_auto_picks_claude_when_it_is_on_path(tmp_path: Path) -> None:
    config = tmp_path / "bot.toml"
    config.write_text('[llm]\nprovider = "auto"\n')
    env = {**os.environ, "PATH": f"{FAKE.parent}{os.pathsep}{os.environ['PATH']}"}
    check = [sys.executable, "-m", "bot", "check", "--config", str(config)]
    result = subprocess.run(check, capture_output=True, text=True, env=env, timeout=30)
    assert "# LLM provider: claude-cli (auto: 'claude' is on PATH" in result.stdout
    env["PATH"] = "/usr/bin:/bin"
    result = subprocess.run(check, capture_output=True, text=True, env=env, timeout=30)
    assert "# LLM provider: none (auto: 'claude' is not on PATH" in result.stdout
