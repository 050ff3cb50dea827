"""Two ``musher run`` daemons on one real PostgreSQL (K2, E1 across daemons), seen from
outside: a change on one shows on the other's board stream; a timer due while both run fires
once and the room is told once; a dependency promotion happens once; a daemon whose LISTEN
connection is killed catches up and misses no change."""

from __future__ import annotations

import json
import queue
import re
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import psycopg

from pipeline.engine import project_slug
from tests.fakes.postgres import Postgres
from tests.integration.daemon import DaemonProcess
from tests.integration.test_timers_daemon import lines, say, set_timer, sleep_until

MakeDaemon = Callable[..., DaemonProcess]
NAME = project_slug(Path.cwd().name)  # the default project: the current directory's


def pair(make_daemon: MakeDaemon, postgres: Postgres) -> tuple[DaemonProcess, DaemonProcess, str]:
    """Two daemons (own data dirs, own node keys) on one new database, both started."""
    url = postgres.new_database()
    extra = f'\n[store]\nurl = "{url}"\n'
    a = make_daemon(extra=extra, window_ms=100).start()
    b = make_daemon(extra=extra, window_ms=100).start()
    return a, b, url


@contextmanager
def board_stream(daemon: DaemonProcess) -> Iterator[queue.Queue[list[dict[str, Any]]]]:
    """The project's board SSE of ``daemon``: each ``items`` frame's items, on a queue."""
    frames: queue.Queue[list[dict[str, Any]]] = queue.Queue()
    stop = threading.Event()

    client = httpx.Client(base_url=daemon.url, timeout=httpx.Timeout(10, read=60))

    def read() -> None:
        # one stream, never reopened: a new stream would show the store, not what the bus
        # delivered
        kind, data = "", ""
        try:
            with client.stream("GET", f"/api/v1/projects/{NAME}/events") as stream:
                for line in stream.iter_lines():
                    if line.startswith("event:"):
                        kind = line[6:].strip()
                    elif line.startswith("data:"):
                        data += line[5:].strip()
                    elif not line and data:
                        if kind == "items":
                            frames.put(json.loads(data)["items"])
                        kind, data = "", ""
        except (httpx.HTTPError, RuntimeError):  # closed under it at the end of the test
            if not stop.is_set():
                raise

    thread = threading.Thread(target=read, name="board-stream", daemon=True)
    thread.start()
    try:
        yield frames
    finally:
        stop.set()
        client.close()
        thread.join(5)


def wait_frame(
    frames: queue.Queue[list[dict[str, Any]]],
    want: Callable[[list[dict[str, Any]]], bool],
    timeout: float = 15.0,
) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    last: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        try:
            last = frames.get(timeout=max(0.01, deadline - time.monotonic()))
        except queue.Empty:
            break
        if want(last):
            return last
    raise AssertionError(f"the board never showed it; last frame: {last}")


def stages(items: list[dict[str, Any]]) -> dict[str, str]:
    return {item["title"]: item["stage"] for item in items}


def test_a_move_on_one_daemon_shows_on_the_others_board(
    make_daemon: MakeDaemon, postgres: Postgres
) -> None:
    a, b, _ = pair(make_daemon, postgres)
    with board_stream(a) as frames:
        wait_frame(frames, lambda items: items == [])
        assert say(b, "new story Login page") == f"Created #1 Login page (story) in {NAME}."
        wait_frame(frames, lambda items: stages(items) == {"Login page": "backlog"})
        say(b, "move 1 coding")
        wait_frame(frames, lambda items: stages(items) == {"Login page": "coding"})
    assert [item["stage"] for item in a.items()] == ["coding"]
    with a.client() as client:
        metrics = client.get("/metrics").text
    assert re.search(r"^musher_bus_lag 0(\.0)?$", metrics, re.M), metrics


def test_a_timer_due_while_both_run_fires_once_and_the_room_is_told_once(
    make_daemon: MakeDaemon, postgres: Postgres
) -> None:
    a, b, _ = pair(make_daemon, postgres)
    assert say(a, "status", room="watch").startswith(NAME)  # follows, through daemon a
    say(b, "new story Deploy")
    tid, due = set_timer(b, "timer 1 +4s start")
    sleep_until(due + 2)  # both daemons had the timer scheduled

    moved = f"#1 Deploy: backlog → coding (by timers: {tid})"
    deadline = time.monotonic() + 10
    while moved not in lines(a, "watch") and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(1.5)  # a second notification would have come by now
    assert [item["stage"] for item in b.items()] == ["coding"]
    assert lines(a, "watch").count(moved) == 1
    assert lines(b, "lobby").count(moved) == 1
    history = say(a, "show 1")
    assert history.count(f"timers ({tid}): stage backlog → coding") == 1
    assert say(b, "timers") == f"No timers in {NAME}."
    assert not [t for t in b.bot_texts("lobby") + a.bot_texts("watch") if "did nothing" in t]
    logs = a.log_text() + b.log_text()  # both fired it: one moved the item, one found it gone
    assert (logs.count(f"timer {tid}: moved"), logs.count(f"timer {tid}: gone")) == (1, 1)


def test_a_dependency_promotion_happens_once(make_daemon: MakeDaemon, postgres: Postgres) -> None:
    a, b, _ = pair(make_daemon, postgres)
    assert say(b, "status", room="watch").startswith(NAME)
    say(a, "new story Base")
    say(a, "new story Top --depends 1")
    say(a, "move 1 coding")
    say(a, "move 1 done")  # both daemons' deps subscribers see it; one promotion is written

    promoted = "#2 Top: backlog → coding (by deps: dependencies met)"
    deadline = time.monotonic() + 10
    while promoted not in lines(b, "watch") and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(1.5)
    assert lines(b, "watch").count(promoted) == 1
    # watch follows through daemon b; daemon a, which made every other change, told it once
    assert lines(b, "watch")[1:] == [
        "#1 Base: new story (by alice)",
        "#2 Top: new story (by alice)",
        "#1 Base: backlog → coding (by alice)",
        "#1 Base: coding → done (by alice)",
        promoted,
    ]
    assert lines(a, "lobby").count(promoted) == 1
    assert say(b, "show 2").count("stage backlog → coding") == 1
    assert [item["stage"] for item in a.items()] == ["done", "coding"]


def test_a_daemon_whose_listen_connection_dies_misses_no_change(
    make_daemon: MakeDaemon, postgres: Postgres
) -> None:
    a, b, url = pair(make_daemon, postgres)
    assert a.proc is not None
    with board_stream(a) as frames:
        wait_frame(frames, lambda items: items == [])
        say(b, "new story One")
        wait_frame(frames, lambda items: stages(items) == {"One": "backlog"})
        with psycopg.connect(url, autocommit=True) as conn:
            [(killed,)] = conn.execute(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                " WHERE application_name = %s",
                (f"musher listen {a.proc.pid}",),
            ).fetchall()
        assert killed >= 1  # its LISTEN connection (or connections, one per part)
        say(b, "new story Two")  # committed while a's LISTEN is down or reconnecting
        say(b, "move 1 coding")
        want = {"One": "coding", "Two": "backlog"}
        wait_frame(frames, lambda items: stages(items) == want)
    assert "LISTEN on" in a.log_text()  # the loss was logged, and it came back
