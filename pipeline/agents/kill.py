"""Kill an agent for good (A4): SIGKILL its process group and everything still running in
its worktree, then wait until every one of them is verified gone (2 s) before anyone may
say it stopped (lesson 1086: status flipped first, and a second agent raced the first)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from pathlib import Path

from pipeline.errors import PipelineError

VERIFY_S = 2.0


class KillFailed(PipelineError):
    """Processes outlived SIGKILL; the agent must not be reported stopped."""


def _alive(pid: int) -> bool:
    """Whether ``pid`` exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8", errors="replace") as stat:
            return stat.read().rsplit(")", 1)[-1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False


def group_members(pgid: int) -> list[int]:
    """The live processes of process group ``pgid``."""
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdecimal():
            continue
        with contextlib.suppress(OSError, IndexError, ValueError):
            with open(f"/proc/{entry}/stat", encoding="utf-8", errors="replace") as stat:
                fields = stat.read().rsplit(")", 1)[-1].split()
            if int(fields[2]) == pgid and fields[0] != "Z":
                out.append(int(entry))
    return out


def processes_in(directory: Path) -> list[int]:
    """The live processes whose working directory or command line is inside ``directory``
    (never this process)."""
    root = str(directory.resolve())
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdecimal() or int(entry) == os.getpid():
            continue
        with contextlib.suppress(OSError):
            cwd = os.readlink(f"/proc/{entry}/cwd").removesuffix(" (deleted)")
            if cwd == root or cwd.startswith(root + "/"):
                out.append(int(entry))
                continue
        with contextlib.suppress(OSError), open(f"/proc/{entry}/cmdline", "rb") as cmdline:
            if root.encode() in cmdline.read():
                out.append(int(entry))
    return [pid for pid in out if _alive(pid)]


async def kill_verified(pgid: int | None, worktree: Path | None) -> None:
    """SIGKILL group ``pgid`` and every process in ``worktree``; return once all are gone.

    Guarantees: when this returns, none of those processes runs any more (zombies of our own
    children count as gone: they run nothing). Safe to call again for processes already gone.

    Raises:
        KillFailed: some survived :data:`VERIFY_S` seconds; their pids are in the message.
    """
    targets: set[int] = set()
    if pgid is not None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signal.SIGKILL)
        targets.update(group_members(pgid))
    if worktree is not None:
        targets.update(processes_in(worktree))
    for pid in targets:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + VERIFY_S
    while True:
        left = [pid for pid in targets if _alive(pid)]
        if pgid is not None:
            left += [pid for pid in group_members(pgid) if pid not in left]
        if not left:
            return
        if loop.time() >= deadline:
            raise KillFailed(f"processes outlived SIGKILL: {sorted(left)}")
        for pid in left:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        await asyncio.sleep(0.02)


def runs_in(pid: int, worktree: Path) -> bool:
    """Whether live ``pid`` works in ``worktree`` (a parked agent left by a crashed daemon;
    a recycled pid elsewhere is not ours to kill)."""
    return _alive(pid) and pid in processes_in(worktree)
