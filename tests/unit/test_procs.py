"""Process groups and verified kills (A4, L6) on real processes."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from bot import procs
from bot.procs import KillError, Process, exited, is_alive, kill_tree, spawn

# A child that starts two grandchildren (one of them escapes into its own session),
# prints their pids and waits.
FAMILY = """
import subprocess, sys, time
kids = [subprocess.Popen(["sleep", "300"]),
        subprocess.Popen(["sleep", "300"], start_new_session=True)]
print(" ".join(str(k.pid) for k in kids), flush=True)
time.sleep(300)
"""


Start = Callable[..., Awaitable[Process]]


@pytest.fixture
async def spawned() -> AsyncIterator[Start]:
    """``spawn`` that kills whatever the test leaves running."""
    started: list[Process] = []

    async def start(*argv: str) -> Process:
        proc = await spawn(argv, stdin=None)
        started.append(proc)
        return proc

    yield start
    for proc in started:
        await kill_tree(proc)
        assert proc.stdout is not None
        await proc.stdout.read()
        assert proc.stderr is not None
        await proc.stderr.read()


async def family(start: Start) -> tuple[Process, list[int]]:
    proc = await start(sys.executable, "-c", FAMILY)
    assert proc.stdout is not None
    line = await asyncio.wait_for(proc.stdout.readline(), 10)
    return proc, [int(pid) for pid in line.split()]


async def test_spawn_makes_the_child_leader_of_its_own_process_group(spawned: Start) -> None:
    proc = await spawned("sleep", "300")
    assert os.getpgid(proc.pid) == proc.pid
    assert os.getpgid(proc.pid) != os.getpgrp()


async def test_kill_tree_leaves_no_process_of_the_tree_alive(spawned: Start) -> None:
    proc, grandchildren = await family(spawned)
    assert all(is_alive(pid) for pid in [proc.pid, *grandchildren])

    await kill_tree(proc)

    assert proc.returncode == -9
    assert [pid for pid in [proc.pid, *grandchildren] if is_alive(pid)] == []


async def test_kill_tree_is_idempotent_and_accepts_an_exited_process(spawned: Start) -> None:
    proc = await spawned(sys.executable, "-c", "pass")
    await exited(proc)
    await kill_tree(proc)
    await kill_tree(proc)
    assert proc.returncode == 0


async def test_a_group_member_outliving_its_leader_is_killed(spawned: Start) -> None:
    script = "import subprocess; print(subprocess.Popen(['sleep', '300']).pid, flush=True)"
    proc = await spawned(sys.executable, "-c", script)
    assert proc.stdout is not None
    orphan = int(await asyncio.wait_for(proc.stdout.readline(), 10))
    assert await exited(proc) == 0  # proc.wait() would wait for the orphan's pipes too
    assert is_alive(orphan)

    await kill_tree(proc)

    assert not is_alive(orphan)


async def test_a_cancel_during_verification_waits_for_it_then_propagates(spawned: Start) -> None:
    proc, grandchildren = await family(spawned)
    killing = asyncio.create_task(kill_tree(proc))
    await asyncio.sleep(0)
    killing.cancel()

    with pytest.raises(asyncio.CancelledError):
        await killing

    assert proc.returncode is not None
    assert not any(is_alive(pid) for pid in [proc.pid, *grandchildren])


async def test_survivors_are_reported_not_ignored(
    spawned: Start, monkeypatch: pytest.MonkeyPatch
) -> None:
    proc = await spawned("sleep", "300")
    monkeypatch.setattr(procs, "_signal_all", lambda pgid, doomed: None)  # a kill that fails

    with pytest.raises(KillError) as error:
        await kill_tree(proc, timeout=0.2)

    assert error.value.survivors == (proc.pid,)
    monkeypatch.undo()
    await kill_tree(proc)
    assert not is_alive(proc.pid)


async def test_spawn_refuses_an_empty_command() -> None:
    with pytest.raises(ValueError):
        await spawn([])
