"""SIGKILL at named points (``MUSHER_CRASH_AT``) of a real ``musher run`` (R7, R4; slow)."""

from __future__ import annotations

import contextlib
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from pipeline.engine import project_slug
from tests.integration.daemon import DaemonProcess
from tests.integration.test_failure_paths import start_to_die, wait_killed
from tests.integration.test_pipeline_daemon import items, restart
from tests.integration.test_timers_daemon import lines, say, set_timer, sleep_until, wait_for_line

MakeDaemon = Callable[..., DaemonProcess]
NAME = project_slug(Path.cwd().name)

pytestmark = pytest.mark.slow


def test_r7_a_timer_killed_while_firing_fires_exactly_once_after_restart(
    make_daemon: MakeDaemon, monkeypatch: pytest.MonkeyPatch
) -> None:
    daemon = make_daemon(window_ms=100)
    start_to_die(daemon, "timer-firing", monkeypatch)  # armed only for the firing
    say(daemon, "new story Deploy")
    tid, due = set_timer(daemon, "timer 1 +3s start")
    sleep_until(due)
    wait_killed(daemon)  # SIGKILL between the timer's re-check and its commit
    assert "MUSHER_CRASH_AT=timer-firing" in daemon.log_text()

    daemon.start()
    moved = f"#1 Deploy: backlog → coding (by timers: {tid})"
    wait_for_line(daemon, "lobby", moved)
    restart(daemon)

    assert [i["stage"] for i in items(daemon, NAME)] == ["coding"]
    assert say(daemon, "show 1").count(f"timers ({tid}): stage backlog → coding") == 1
    assert say(daemon, "timers") == f"No timers in {NAME}."
    assert lines(daemon, "lobby").count(moved) == 1


def test_r4_an_op_killed_before_its_commit_is_absent_and_the_log_verifies(
    make_daemon: MakeDaemon, monkeypatch: pytest.MonkeyPatch
) -> None:
    daemon = make_daemon(window_ms=100).start()  # the default project's op is committed
    assert say(daemon, "new story Kept").startswith("Created #1 Kept")
    assert daemon.terminate() == 0
    start_to_die(daemon, "mid-op-commit", monkeypatch)
    with contextlib.suppress(httpx.TransportError):  # killed before or after its 202
        daemon.post("lobby", "new story Lost")
    wait_killed(daemon)

    daemon.start()
    assert [i["title"] for i in items(daemon, NAME)] == ["Kept"]
    assert daemon.terminate() == 0

    verify = [sys.executable, "-m", "bot", "audit", "verify", "--config", str(daemon.config)]
    result = subprocess.run(verify, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    with sqlite3.connect(daemon.data_dir / "musher.db") as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
