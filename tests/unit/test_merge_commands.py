"""The merge subscriber and its commands: one merge at a time per project, an item moved
away mid-merge, leftovers swept by reconcile, ``retry_merge`` refusals, ``git``."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from pipeline import leases
from pipeline.agents.merge_queue import MergeQueue, MergeSettings
from pipeline.agents.naming import merge_path
from pipeline.model import Done, stage_name
from pipeline.sandbox import LocalSandbox
from tests.fakes.git_server import git
from tests.unit.merge_env import PROJECT, MergeRoom, in_coding, merge_room, python_gate


@pytest.fixture
async def app(tmp_path: Path) -> AsyncIterator[MergeRoom]:
    async with merge_room(tmp_path) as room:
        yield room


async def test_reconcile_removes_a_killed_merges_worktree_and_what_runs_in_it(
    app: MergeRoom,
) -> None:
    where = merge_path(app.room.data_dir, PROJECT, 7)
    git("worktree", "add", "--quiet", "--detach", str(where), "main", cwd=app.repo)
    gate = await asyncio.create_subprocess_exec("sleep", "60", cwd=where)  # a gate left running
    queue = MergeQueue(
        app.room.core.engine, MergeSettings(app.room.data_dir, lambda r: LocalSandbox()),
        lambda project, text: None,
    )  # fmt: skip
    try:
        await queue.reconcile()
        assert await asyncio.wait_for(gate.wait(), 5) == -9
    finally:
        if gate.returncode is None:
            gate.kill()
            await gate.wait()
    assert app.merge_dirs() == []
    assert "merge-7" not in git("worktree", "list", cwd=app.repo)
    stray = merge_path(app.room.data_dir, "home", 3)  # project "home" has no repository
    stray.mkdir(parents=True)
    (stray / "half-made").write_text("x")
    await queue.reconcile()
    assert not stray.exists()
    await queue.reconcile()  # idempotent: nothing left, nothing done
    await queue.aclose()


async def test_git_shows_agent_branches_and_the_base_checkout(app: MergeRoom) -> None:
    assert await app.say("git") == (
        f"app ({app.repo}): on main, clean.\nNo agent branches (musher/app-N)."
    )
    await in_coding(app, "One")
    await in_coding(app, "Two")
    app.agent_commit(1, {"a.txt": "1\n"})
    app.agent_commit(2, {"b.txt": "2\n"})
    app.agent_commit(2, {"b.txt": "2b\n"})
    (app.repo / "notes.txt").write_text("x")
    await app.say("move 1 merge")
    merged = await app.settled(1)
    where = app.room.data_dir / "worktrees" / PROJECT / "2"
    (where / "b.txt").write_text("unsaved\n")
    assert isinstance(merged.stage, Done) and merged.stage.merge_commit

    reply = await app.say("git app")

    assert reply.splitlines() == [
        f"app ({app.repo}): on main, 1 uncommitted file (notes.txt).",
        f"musher/app-1: merged into main as {merged.stage.merge_commit[:10]}; worktree clean.",
        "musher/app-2: 2 ahead, 1 behind main; worktree 1 uncommitted file (b.txt).",
    ]
    assert await app.say("git nope") == "No project 'nope'. Projects: app, home."


async def test_merges_of_one_project_run_one_at_a_time(app: MergeRoom, tmp_path: Path) -> None:
    journal = tmp_path / "gates.log"
    await app.set_gates(python_gate(tmp_path, (
        "import os, time\n"
        f"log = open({str(journal)!r}, 'a')\n"
        "log.write('start ' + os.path.basename(os.getcwd()) + '\\n'); log.flush()\n"
        "time.sleep(0.3)\n"
        "log.write('end ' + os.path.basename(os.getcwd()) + '\\n')\n"
    )))  # fmt: skip
    for n, title in ((1, "One"), (2, "Two"), (3, "Three")):
        await in_coding(app, title)
        app.agent_commit(n, {f"{n}.txt": f"{n}\n"})
    for n in (1, 2, 3):
        await app.say(f"move {n} merge")

    merged = [await app.settled(n) for n in (1, 2, 3)]

    assert all(isinstance(item.stage, Done) for item in merged)
    assert journal.read_text().splitlines() == [
        "start merge-1", "end merge-1", "start merge-2", "end merge-2",
        "start merge-3", "end merge-3",
    ]  # fmt: skip
    assert app.main_log()[:3] == [
        "musher: merge #3 Three", "musher: merge #2 Two", "musher: merge #1 One",
    ]  # fmt: skip


async def test_an_item_moved_away_during_its_merge_is_not_merged(
    app: MergeRoom, tmp_path: Path
) -> None:
    started, hold = tmp_path / "started", tmp_path / "hold"
    await app.set_gates(python_gate(tmp_path, (
        "import pathlib, time\n"
        f"pathlib.Path({str(started)!r}).touch()\n"
        f"while pathlib.Path({str(hold)!r}).exists():\n    time.sleep(0.05)\n"
    )))  # fmt: skip
    await in_coding(app)
    app.agent_commit(1, {"a.txt": "agent\n"})
    tip = app.main_tip()
    hold.touch()
    await app.say("move 1 merge")
    async with asyncio.timeout(20):
        while not started.exists():  # noqa: ASYNC110 - the gate runs in another process
            await asyncio.sleep(0.05)

    assert await app.say("move 1 backlog") == "#1 Login page: merge → backlog."
    hold.unlink()

    line = await app.wait_line("merge stopped")
    assert line == "#1 Login page: merge stopped (#1 left the merge stage; not merged.)"
    assert app.main_tip() == tip and app.merge_dirs() == []
    assert stage_name((await app.item(1)).stage) == "backlog"


async def test_bad_input_to_the_merge_commands_changes_nothing(app: MergeRoom) -> None:
    await in_coding(app)
    ops = await app.room.ops()

    assert await app.say("retry_merge 1") == (
        "#1 is in coding; cannot retry_merge. Only an item whose merge failed can retry it."
    )
    assert await app.say("retry_merge 99") == "No item #99 in app."
    assert (await app.say("retry_merge")).startswith("Usage: retry_merge N\n")
    assert (
        await app.say("git home")
        == f"home ({app.room.root.parent / 'home'}) is not a git repository."
    )
    assert await app.room.ops() == ops


async def test_a_merge_another_daemon_holds_is_left_to_it_and_taken_up_once_free(
    app: MergeRoom, caplog: pytest.LogCaptureFixture
) -> None:
    """Several daemons on one store all find the items waiting in Merge: a merge runs only
    under the project's lease ``merge:app``, so while another node holds it this daemon
    leaves the item alone; once it is free the next reconcile merges it, and lets go."""
    caplog.set_level(logging.INFO, "musher.merge")
    db, other, merges = app.room.db, "b" * 64, app.room.core.merges
    assert merges is not None
    theirs = await leases.acquire(db, "merge:app", other, 60.0, time.time())
    assert theirs is not None
    await in_coding(app)
    app.agent_commit(1, {"a.txt": "agent\n"})
    tip = app.main_tip()

    await app.say("move 1 merge")
    async with asyncio.timeout(20):
        while "another daemon is merging" not in caplog.text:  # noqa: ASYNC110
            await asyncio.sleep(0.05)
    assert stage_name((await app.item(1)).stage) == "merge" and app.main_tip() == tip

    await leases.release(db, theirs)
    await merges.reconcile()
    merged = await app.settled(1)
    assert isinstance(merged.stage, Done) and app.main_tip() == merged.stage.merge_commit
    assert not [h for h in await leases.holders(db, time.time()) if h.name == "merge:app"]
