"""Failure paths tell the truth (issue 9 point 5, R18, D6, I1) through a real ``musher run``:
a SIGKILL at a named point (``MUSHER_CRASH_AT``), a full disk, two rooms' client ids."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from bot.ingress import INTERRUPTED
from tests.integration.daemon import DaemonProcess

MakeDaemon = Callable[..., DaemonProcess]


def start_to_die(daemon: DaemonProcess, label: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Start ``daemon`` with ``MUSHER_CRASH_AT=label`` (it may die before it is ready)."""
    monkeypatch.setenv("MUSHER_CRASH_AT", label)
    try:
        daemon.start()
    except RuntimeError:
        pass  # killed while starting: what the test asked for
    finally:
        monkeypatch.delenv("MUSHER_CRASH_AT")


def wait_killed(daemon: DaemonProcess) -> None:
    assert daemon.proc is not None
    assert daemon.proc.wait(20) == -9, daemon.log_text()


def test_a_message_killed_right_after_its_journal_entry_is_answered_after_restart(
    make_daemon: MakeDaemon, monkeypatch: pytest.MonkeyPatch
) -> None:
    daemon = make_daemon(window_ms=100)
    start_to_die(daemon, "after-journal", monkeypatch)
    with pytest.raises(httpx.TransportError):  # killed before it could answer 202
        daemon.post("lobby", "are you there?")
    wait_killed(daemon)

    daemon.start()

    assert daemon.wait_for("lobby", 1) == ["echo: are you there?"]
    assert "MUSHER_CRASH_AT=after-journal" in daemon.log_text()


def test_a_room_is_told_once_per_interrupted_turn_not_at_every_restart(
    make_daemon: MakeDaemon, monkeypatch: pytest.MonkeyPatch
) -> None:
    daemon = make_daemon(window_ms=1000)
    start_to_die(daemon, "after-turn-start", monkeypatch)
    assert daemon.post("lobby", "hello").status_code == 202
    wait_killed(daemon)  # the turn was recorded, then the process died

    start_to_die(daemon, "before-turn-start", monkeypatch)
    wait_killed(daemon)  # told, the replayed batch closed, killed before its turn began

    daemon.start()

    texts = daemon.wait_for("lobby", 2)
    time.sleep(1.5)  # a second notice would come with the replay, before the answer
    assert daemon.bot_texts("lobby") == [INTERRUPTED, "echo: hello"], texts


def test_client_ids_are_per_room(make_daemon: MakeDaemon) -> None:
    daemon = make_daemon(window_ms=100).start()

    first = daemon.post("a", "from a", id="msg-1")
    other_room = daemon.post("b", "from b", id="msg-1")
    again = daemon.post("a", "from a", id="msg-1")

    assert (first.status_code, other_room.status_code) == (202, 202)
    assert again.status_code == 200 and again.json()["status"] == "duplicate"
    assert daemon.wait_for("a", 1) == ["echo: from a"]
    assert daemon.wait_for("b", 1) == ["echo: from b"]


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 16 MB tmpfs mounted where the daemon keeps its data (needs root), unmounted after."""
    where = tmp_path / "d0" / "data"
    where.mkdir(parents=True)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(where)], capture_output=True
    )
    if mounted.returncode != 0:
        if os.environ.get("CI") == "true":
            raise RuntimeError(f"cannot mount a tmpfs: {mounted.stderr!r}")
        pytest.skip("mounting a tmpfs needs root")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=True)


def fill(disk: Path) -> Path:
    """Fill ``disk`` to the last byte; the filler file is returned (delete it to free)."""
    filler = disk / "filler"
    with filler.open("wb", buffering=0) as out:
        for size in (1 << 20, 4096, 1):
            try:
                while True:
                    out.write(b"\0" * size)
            except OSError:
                continue
    return filler


def readyz(daemon: DaemonProcess) -> httpx.Response:
    with daemon.client() as client:
        return client.get("/readyz")


def wait_until(check: Callable[[], bool], timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def test_r18_a_full_disk_answers_503_says_why_and_loses_no_turn(
    make_daemon: MakeDaemon, small_disk: Path
) -> None:
    daemon = make_daemon(delay=1.0, window_ms=100).start()
    assert daemon.data_dir == small_disk
    assert daemon.post("lobby", "first").status_code == 202
    daemon.wait_typing("lobby")  # the turn runs; its answer will need the disk
    filler = fill(small_disk)
    wait_until(lambda: readyz(daemon).status_code == 503)  # the answer could not be saved

    refused = daemon.post("lobby", "second")

    assert refused.status_code == 503
    assert refused.json()["error"].startswith("musher cannot store messages right now:")
    state = readyz(daemon).json()["components"]["store"]
    assert state.startswith("failing: ") and "full" in state
    assert daemon.bot_texts("lobby") == []  # nothing was lost: nothing claimed answered

    filler.unlink()
    wait_until(lambda: len(daemon.bot_texts("lobby")) >= 2)

    notice, answer = daemon.bot_texts("lobby")
    assert notice.startswith("⚠️ musher could not save while answering (")
    assert notice.endswith("); answering again.")
    assert answer == "echo: first"
    wait_until(lambda: readyz(daemon).status_code == 200)
    assert daemon.post("lobby", "again").status_code == 202
    assert daemon.wait_for("lobby", 3)[-1] == "echo: again"
    assert "ERROR musher.dispatcher" not in daemon.log_text()  # no turn was dropped
