"""Child processes in their own process group, and kills that are verified (A4, L6).

:func:`spawn` starts a program (never through a shell) as the leader of a new session, so
the program and everything it forks share one process group. :func:`kill_tree` SIGKILLs
that group, plus any descendant that left it (``setsid``), and returns only once every one
of them is gone and the direct child is reaped. A zombie counts as gone: it can no longer
run, and reaping orphans is the job of PID 1.

The descendant sweep and the zombie check read ``/proc`` (Linux); elsewhere only the
process group is killed and polled.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
import weakref
from collections.abc import Mapping, Sequence
from pathlib import Path

from config.errors import PermanentError

PIPE = asyncio.subprocess.PIPE
_PROC = Path("/proc")
_POLL_S = 0.01
_verified: weakref.WeakSet[asyncio.subprocess.Process] = weakref.WeakSet()

Process = asyncio.subprocess.Process
ProcKey = tuple[int, int]
"""A process as ``(pid, start time)``, so a recycled pid is never mistaken for it."""


class KillError(PermanentError):
    """Processes survived SIGKILL for longer than the timeout; ``survivors`` lists their pids."""

    def __init__(self, message: str, survivors: Sequence[int]) -> None:
        super().__init__(message)
        self.survivors = tuple(survivors)


async def spawn(
    argv: Sequence[str],
    *,
    cwd: str | Path | None = None,
    env: Mapping[str, str] | None = None,
    stdin: int | None = PIPE,
    stdout: int | None = PIPE,
    stderr: int | None = PIPE,
    limit: int = 2**16,
) -> Process:
    """Start ``argv`` as the leader of a new session and process group (pgid == pid).

    ``limit`` bounds one line read from ``stdout``/``stderr``. Raises ``OSError``
    (``FileNotFoundError``, ``PermissionError``) when the program cannot be started.
    """
    if not argv:
        raise ValueError("spawn needs a program to run")
    return await asyncio.create_subprocess_exec(
        *argv,
        cwd=cwd,
        env=dict(env) if env is not None else None,
        stdin=stdin,
        stdout=stdout,
        stderr=stderr,
        limit=limit,
        start_new_session=True,
    )


async def kill_tree(proc: Process, timeout: float = 2.0) -> None:  # noqa: ASYNC109 (grace, not a deadline)
    """SIGKILL ``proc``'s process group and its descendants; return once all are gone.

    On return every process of the group (and every descendant seen when the kill began)
    is dead and ``proc`` itself is reaped (``proc.returncode`` is set). Idempotent: a second
    call on a verified process returns at once. A cancel that arrives while verifying is
    held back until the verification ends (at most ``timeout``) and then re-raised, so a
    cancelled caller never unwinds past live processes.

    Raises:
        KillError: something was still alive after ``timeout`` seconds.
    """
    if proc in _verified:
        return
    pgid = proc.pid
    # Once reaped, proc.pid may belong to a stranger: only its old group is still ours.
    doomed = _descendants(proc.pid) if proc.returncode is None else set()
    _signal_all(pgid, doomed)
    deadline = time.monotonic() + timeout
    cancelled = False
    while True:
        try:
            survivors = await _survivors(proc, pgid, doomed, deadline)
            break
        except asyncio.CancelledError:
            cancelled = True
    if survivors:
        raise KillError(
            f"processes {sorted(survivors)} of group {pgid} survived SIGKILL for {timeout:g} s",
            sorted(survivors),
        )
    _verified.add(proc)
    if cancelled:
        raise asyncio.CancelledError


async def exited(proc: Process, poll_s: float = 0.05) -> int:
    """Wait until ``proc`` itself has exited and return its exit code.

    Unlike ``proc.wait()`` this does not also wait for the pipes to close, which a
    grandchild may hold open long after ``proc`` is gone. A cancel leaves ``proc`` as it was.
    """
    # asyncio only signals the exit together with the pipes' closing, hence the poll.
    while proc.returncode is None:  # noqa: ASYNC110
        await asyncio.sleep(poll_s)
    return proc.returncode


def is_alive(pid: int) -> bool:
    """Whether ``pid`` names a process that can still run (a zombie is not alive)."""
    state = _stat(pid)
    if state is not None:
        return state[0] not in "ZX"
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return not _PROC.is_dir()


def _signal_all(pgid: int, doomed: set[ProcKey]) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)
    for pid, _ in doomed:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)


async def _survivors(proc: Process, pgid: int, doomed: set[ProcKey], deadline: float) -> set[int]:
    """Poll until the group and ``doomed`` are gone and ``proc`` is reaped, or the deadline.

    ``proc.returncode`` is set as soon as the child is reaped; ``proc.wait()`` would also
    wait for its pipes, which a survivor of the group may still hold.
    """
    while True:
        survivors = _living_in_group(pgid) | {pid for pid, start in doomed if _same(pid, start)}
        if proc.returncode is None:
            survivors.add(proc.pid)
        if not survivors or time.monotonic() >= deadline:
            return survivors
        await asyncio.sleep(_POLL_S)


def _living_in_group(pgid: int) -> set[int]:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return set()
    except PermissionError:
        return {pgid}
    if not _PROC.is_dir():
        return {pgid}
    living = set()
    for pid in _all_pids():
        stat = _stat(pid)
        if stat is not None and stat[2] == pgid and stat[0] not in "ZX":
            living.add(pid)
    return living


def _same(pid: int, start: int) -> bool:
    stat = _stat(pid)
    return stat is not None and stat[3] == start and stat[0] not in "ZX"


def _descendants(root: int) -> set[ProcKey]:
    """Every living descendant of ``root`` as ``(pid, start time)``; empty without /proc."""
    if not _PROC.is_dir():
        return set()
    children: dict[int, list[tuple[int, int]]] = {}
    for pid in _all_pids():
        stat = _stat(pid)
        if stat is not None and stat[0] not in "ZX":
            children.setdefault(stat[1], []).append((pid, stat[3]))
    found: set[ProcKey] = set()
    stack = [root]
    while stack:
        for key in children.get(stack.pop(), []):
            if key not in found:
                found.add(key)
                stack.append(key[0])
    return found


def _all_pids() -> list[int]:
    try:
        return [int(entry.name) for entry in os.scandir(_PROC) if entry.name.isdigit()]
    except OSError:
        return []


def _stat(pid: int) -> tuple[str, int, int, int] | None:
    """``(state, ppid, pgid, start time)`` from ``/proc/<pid>/stat``, or None if gone."""
    try:
        raw = (_PROC / str(pid) / "stat").read_bytes().decode(errors="replace")
    except OSError:
        return None
    fields = raw[raw.rfind(")") + 2 :].split()
    try:
        return fields[0], int(fields[1]), int(fields[2]), int(fields[19])
    except (IndexError, ValueError):
        return None
