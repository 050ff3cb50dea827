"""A merge interrupted by a SIGKILL of a real ``musher run`` (A3): after the restart no
temporary worktree or gate process is left, the base branch is either where it was or on
the whole merge (never twice), and the item ends Done."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.fakes.git_server import git
from tests.integration.daemon import DaemonProcess
from tests.integration.test_failure_paths import start_to_die, wait_killed
from tests.integration.test_pipeline_daemon import items
from tests.integration.test_timers_daemon import say, wait_for_line

MakeDaemon = Callable[..., DaemonProcess]

CONFIG = """
[projects]
root = "{root}"
default = "app"
git_user_name = "Musher Test"
git_user_email = "musher@example.org"

[[projects.entry]]
name = "app"
path = "{repo}"
"""


def app_daemon(make_daemon: MakeDaemon, tmp_path: Path, gates: str = "") -> DaemonProcess:
    """A daemon whose default project ``app`` is a fresh repository on ``main``."""
    repo = tmp_path / "app"
    (repo / ".musher").mkdir(parents=True)
    (repo / "README").write_text("app\n")
    if gates:
        (repo / ".musher" / "project.toml").write_text(f"gates = [{gates}]\n")
    git("init", "--quiet", "--initial-branch=main", cwd=repo)
    git("add", "--all", cwd=repo)
    git("commit", "--quiet", "-m", "first", cwd=repo)
    return make_daemon(window_ms=100, extra=CONFIG.format(root=tmp_path, repo=repo))


def agent_work(daemon: DaemonProcess, tmp_path: Path) -> Path:
    """Item #1 through Coding to Qa with one commit on its branch; returns the repository."""
    repo = tmp_path / "app"
    assert say(daemon, "new story Login page") == "Created #1 Login page (story) in app."
    assert say(daemon, "move 1 coding") == "#1 Login page: backlog → coding."
    work = tmp_path / "agent-1"
    git("worktree", "add", "--quiet", "-b", "musher/app-1", str(work), "main", cwd=repo)
    (work / "a.txt").write_text("agent\n")
    git("add", "a.txt", cwd=work)
    git("commit", "--quiet", "-m", "add a", cwd=work)
    assert say(daemon, "move 1 qa") == "#1 Login page: coding → qa."
    return repo


def merge_dirs(daemon: DaemonProcess) -> list[str]:
    return sorted(p.name for p in (daemon.data_dir / "worktrees" / "app").glob("merge-*"))


def wait_done(daemon: DaemonProcess, timeout: float = 30) -> dict[str, object]:
    deadline = time.monotonic() + timeout
    while True:
        [item] = items(daemon, "app")
        if item["stage"] not in ("merge", "qa"):
            return item
        assert time.monotonic() < deadline, item
        time.sleep(0.1)


def main_log(repo: Path) -> list[str]:
    return git("log", "--format=%s", "main", cwd=repo).splitlines()


@pytest.mark.parametrize("label", ["merge-before-ff", "merge-after-ff"])
def test_a_merge_killed_around_the_fast_forward_ends_done_exactly_once_after_restart(
    make_daemon: MakeDaemon, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, label: str
) -> None:
    daemon = app_daemon(make_daemon, tmp_path)
    start_to_die(daemon, label, monkeypatch)
    repo = agent_work(daemon, tmp_path)
    daemon.post("lobby", "move 1 merge")
    wait_killed(daemon)
    assert f"MUSHER_CRASH_AT={label}" in daemon.log_text()
    assert merge_dirs(daemon) == ["merge-1"]  # the kill left the temporary worktree
    moved = label == "merge-after-ff"
    assert main_log(repo) == (["musher: merge #1 Login page", "first"] if moved else ["first"])

    daemon.start()
    item = wait_done(daemon)

    assert item["stage"] == "done"
    assert main_log(repo) == ["musher: merge #1 Login page", "first"]  # once, whole
    assert git("show", "main:a.txt", cwd=repo) == "agent\n"
    assert merge_dirs(daemon) == []
    assert "merge-1" not in git("worktree", "list", cwd=repo)
    how = "found from an earlier, interrupted merge" if moved else "1 commit squashed"
    tip = git("rev-parse", "--short=10", "main", cwd=repo).strip()
    wait_for_line(daemon, "lobby", f"✅ #1 Login page merged into main as {tip} ({how}).")
    assert daemon.terminate() == 0


def hanging_gate(make_daemon: MakeDaemon, tmp_path: Path) -> tuple[DaemonProcess, Path, int]:
    """A daemon merging #1 whose gate hangs (until ``tmp/hang`` goes); the gate's pid."""
    pid_file, hang = tmp_path / "gate.pid", tmp_path / "hang"
    script = tmp_path / "gate.py"
    script.write_text(
        "import os, pathlib, time\n"
        f"pathlib.Path({str(pid_file)!r}).write_text(str(os.getpid()))\n"
        f"while pathlib.Path({str(hang)!r}).exists():\n    time.sleep(0.1)\n"
    )
    gates = ", ".join(f'"{a}"' for a in (sys.executable, str(script)))
    daemon = app_daemon(make_daemon, tmp_path, gates=f"[{gates}]").start()
    repo = agent_work(daemon, tmp_path)
    hang.touch()
    say(daemon, "move 1 merge")
    deadline = time.monotonic() + 20
    while not pid_file.exists():
        assert time.monotonic() < deadline, daemon.log_text()
        time.sleep(0.05)
    return daemon, repo, int(pid_file.read_text())


def test_a_daemon_killed_during_the_merge_gates_leaves_no_gate_running(
    make_daemon: MakeDaemon, tmp_path: Path
) -> None:
    daemon, repo, gate = hanging_gate(make_daemon, tmp_path)
    daemon.kill()  # SIGKILL mid-gate; the gate runs on in its own session
    assert alive(gate)
    (tmp_path / "hang").unlink()

    daemon.start()
    item = wait_done(daemon)

    assert not alive(gate), "the reconciler left the old gate running"
    assert item["stage"] == "done"
    assert main_log(repo) == ["musher: merge #1 Login page", "first"]
    assert merge_dirs(daemon) == []
    assert daemon.terminate() == 0


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as stat:  # a zombie is gone for our purpose
        return stat.read().split(")")[-1].split()[0] != "Z"


def test_a_shutdown_during_the_merge_gates_stops_them_and_the_restart_merges(
    make_daemon: MakeDaemon, tmp_path: Path
) -> None:
    daemon, repo, gate = hanging_gate(make_daemon, tmp_path)

    assert daemon.terminate() == 0  # SIGTERM: the merge is cancelled, its gate killed

    assert not alive(gate)
    assert merge_dirs(daemon) == [] and main_log(repo) == ["first"]
    (tmp_path / "hang").unlink()
    daemon.start()
    assert wait_done(daemon)["stage"] == "done"
    assert main_log(repo) == ["musher: merge #1 Login page", "first"]
    assert daemon.terminate() == 0
