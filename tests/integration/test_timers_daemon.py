"""Timers through a real ``musher run``: purge survives restarts (R6), downtime (R7)."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from pipeline.engine import project_slug
from tests.integration.daemon import DaemonProcess
from tests.integration.test_pipeline_daemon import items, restart

MakeDaemon = Callable[..., DaemonProcess]
NAME = project_slug(Path.cwd().name)  # the default project: the current directory's


def say(daemon: DaemonProcess, text: str, room: str = "lobby") -> str:
    """Post ``text`` to ``room`` and return the bot's reply to it."""
    count = len(daemon.bot_texts(room))
    assert daemon.post(room, text).status_code == 202
    replies = daemon.wait_for(room, count + 1)
    assert len(replies) == count + 1, f"no reply to {text!r}"
    return replies[-1]


def wait_for_line(daemon: DaemonProcess, room: str, line: str, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while line not in lines(daemon, room):
        assert time.monotonic() < deadline, f"{room} never saw {line!r}: {lines(daemon, room)}"
        time.sleep(0.05)


def lines(daemon: DaemonProcess, room: str) -> list[str]:
    return "\n".join(daemon.bot_texts(room)).splitlines()


def set_timer(daemon: DaemonProcess, text: str) -> tuple[str, float]:
    """Set a timer; return its id and the monotonic time by which it is due."""
    before = time.monotonic()
    reply = say(daemon, text)
    match = re.match(r"⏰ Timer (t[0-9a-f]{6}): .* in (\d+)s\.", reply)
    assert match, reply
    return match[1], before + int(match[2]) + 1


def sleep_until(deadline: float) -> None:
    time.sleep(max(0.0, deadline - time.monotonic()))


def test_r6_a_purged_item_and_its_timer_stay_gone_across_restarts(
    make_daemon: MakeDaemon,
) -> None:
    daemon = make_daemon(window_ms=100).start()
    assert say(daemon, "status", room="watch").startswith(NAME)  # the watching room follows
    assert say(daemon, "new story Login page") == f"Created #1 Login page (story) in {NAME}."
    _, due = set_timer(daemon, "timer 1 +4s start")
    reply = say(daemon, "purge 1")
    assert reply == f"Purged #1 Login page from {NAME}. Cleared: item row, 1 timer."
    wait_for_line(daemon, "watch", "#1 Login page: purged (by alice)")
    seen = daemon.bot_texts("watch")

    restart(daemon)
    restart(daemon)
    sleep_until(due + 1)  # the timer's time has come and gone, the daemon up

    assert items(daemon, NAME) == []
    assert say(daemon, "timers") == f"No timers in {NAME}."
    assert say(daemon, "show 1") == f"No item #1 in {NAME}."
    assert daemon.bot_texts("watch") == seen  # nothing came back, no timer fired
    fired = [t for t in daemon.bot_texts("lobby") if "→ coding (by" in t or "did nothing" in t]
    assert fired == []
    assert say(daemon, "new story Again") == f"Created #2 Again (story) in {NAME}."


def test_r7_a_timer_due_while_down_fires_exactly_once_after_restart(
    make_daemon: MakeDaemon,
) -> None:
    daemon = make_daemon(window_ms=100).start()
    say(daemon, "new story Deploy")
    tid, due = set_timer(daemon, "timer 1 +4s start")
    assert daemon.terminate() == 0
    sleep_until(due)  # its time passes while the daemon is down

    daemon.start()
    wait_for_line(daemon, "lobby", f"#1 Deploy: backlog → coding (by timers: {tid})")
    assert [i["stage"] for i in items(daemon, NAME)] == ["coding"]
    restart(daemon)

    history = say(daemon, "show 1")
    assert history.count(f"timers ({tid}): stage backlog → coding") == 1
    assert say(daemon, "timers") == f"No timers in {NAME}."
    assert lines(daemon, "lobby").count(f"#1 Deploy: backlog → coding (by timers: {tid})") == 1


def test_a_timer_missed_beyond_the_grace_is_reported_not_run(
    make_daemon: MakeDaemon, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MUSHER_DAEMON__MISFIRE_GRACE_S", "1")
    daemon = make_daemon(window_ms=100).start()
    say(daemon, "new story Deploy")
    tid, due = set_timer(daemon, "timer 1 +2s start")
    assert daemon.terminate() == 0
    sleep_until(due + 2)

    daemon.start()
    deadline = time.monotonic() + 10
    while not any(f"Timer {tid} missed" in t for t in daemon.bot_texts("lobby")):
        assert time.monotonic() < deadline, daemon.bot_texts("lobby")
        time.sleep(0.05)
    assert [i["stage"] for i in items(daemon, NAME)] == ["backlog"]
    assert say(daemon, "timers") == f"No timers in {NAME}."
