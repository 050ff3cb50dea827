"""Merging an item (A3) with real git: the whole path driven by commands, refusals before
anything is spent, conflicts, gate failures, dirty base checkouts, leftovers after a crash."""

from __future__ import annotations

import asyncio
import shlex
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from pipeline.agents.merge import MergeJob, merge_item
from pipeline.agents.merge_queue import MergeQueue, MergeSettings
from pipeline.agents.naming import merge_path
from pipeline.model import Done, MergeFailure, stage_name
from pipeline.sandbox import LocalSandbox
from tests.fakes.git_server import git
from tests.unit.merge_env import PROJECT, MergeRoom, merge_room
from tests.unit.test_sandbox import need_bwrap


@pytest.fixture
async def app(tmp_path: Path) -> AsyncIterator[MergeRoom]:
    async with merge_room(tmp_path) as room:
        yield room


async def to_merge(app: MergeRoom, title: str = "Login page") -> None:
    """``new story``, then Backlog → Coding → Qa → Merge with commands."""
    assert (await app.say(f"new story {title}")).startswith("Created #")
    number = len(await app.room.core.engine.items(PROJECT))
    assert await app.say(f"move {number} coding") == f"#{number} {title}: backlog → coding."


def python_gate(tmp_path: Path, code: str) -> str:
    """A gate command running ``code`` (from a script outside the repository)."""
    script = tmp_path / f"gate{len(list(tmp_path.glob('gate*.py')))}.py"
    script.write_text(code)
    return shlex.join([sys.executable, str(script)])


async def test_the_whole_path_ends_in_one_squash_commit_on_main(
    app: MergeRoom, tmp_path: Path
) -> None:
    await app.set_gates(
        python_gate(tmp_path, "import pathlib\nassert pathlib.Path('a.txt').read_text()")
    )
    before = app.main_log()
    await to_merge(app)
    app.agent_commit(1, {"a.txt": "hello\n"}, "add a")
    app.agent_commit(1, {"b.txt": "more\n"}, "add b")
    assert await app.say("move 1 qa") == "#1 Login page: coding → qa."
    assert await app.say("move 1 merge") == "#1 Login page: qa → merge."

    item = await app.settled(1)

    assert item.stage == Done(merge_commit=app.main_tip())
    assert app.main_log() == ["musher: merge #1 Login page", *before]  # exactly one commit
    assert git("show", "main:a.txt", cwd=app.repo) == "hello\n"
    assert git("show", "main:b.txt", cwd=app.repo) == "more\n"
    author = git("log", "-1", "--format=%an <%ae>", "main", cwd=app.repo).strip()
    assert author == "Musher Test <musher@example.org>"
    body = git("log", "-1", "--format=%b", "main", cwd=app.repo)
    assert "* add a" in body and "* add b" in body
    assert (app.repo / "a.txt").read_text() == "hello\n"  # the checkout on main moved too
    assert git("status", "--porcelain", cwd=app.repo) == ""
    assert app.merge_dirs() == []
    line = await app.wait_line("✅")
    assert line == f"✅ #1 Login page merged into main as {item.stage.merge_commit[:10]}" + (
        " (2 commits squashed)."
    )
    assert "#1 Login page: merge → done (by merge: squash merge)" in await app.wait_line("→ done")


async def test_a_branch_without_commits_is_refused_before_anything_runs(
    app: MergeRoom, tmp_path: Path
) -> None:
    marker = tmp_path / "gate-ran"
    await app.set_gates(python_gate(tmp_path, f"open({str(marker)!r}, 'w')"))
    await to_merge(app)
    git("branch", "musher/app-1", "main", cwd=app.repo)
    await app.say("move 1 merge")

    item = await app.settled(1)

    assert item.stage == MergeFailure("no-commits", "no commits ahead of main")
    assert not marker.exists()  # no gate ran, no worktree was made
    assert git("worktree", "list", "--porcelain", cwd=app.repo).count("worktree ") == 1
    assert "❌ #1 Login page: merge failed (no-commits): no commits ahead of main" in (
        await app.wait_line("❌")
    )


async def test_an_item_without_a_branch_fails_with_the_branch_named(app: MergeRoom) -> None:
    await to_merge(app)
    await app.say("move 1 merge")
    item = await app.settled(1)
    assert item.stage == MergeFailure("no-branch", "There is no branch musher/app-1 to merge.")


async def test_a_conflict_names_the_file_and_retry_merge_lands_the_fix(app: MergeRoom) -> None:
    (app.repo / "a.txt").write_text("base\n")
    git("add", "a.txt", cwd=app.repo)
    git("commit", "--quiet", "-m", "base a", cwd=app.repo)
    await to_merge(app)
    app.agent_commit(1, {"a.txt": "agent\n"})
    (app.repo / "a.txt").write_text("human\n")
    git("commit", "--quiet", "-am", "human edit", cwd=app.repo)
    tip = app.main_tip()
    await app.say("move 1 merge")

    failed = await app.settled(1)

    assert failed.stage == MergeFailure("conflict", "musher/app-1 conflicts with main in: a.txt.")
    assert app.main_tip() == tip and app.merge_dirs() == []
    assert await app.wait_line("`retry_merge 1` tries again.")

    where = app.room.data_dir / "worktrees" / PROJECT / "1"
    git("merge", "--quiet", "-X", "theirs", "main", "-m", "take main", cwd=where)
    app.agent_commit(1, {"a.txt": "human and agent\n"}, "resolve")
    assert await app.say("retry_merge 1") == (
        "#1 Login page: merge-failure → merge. Merging it again."
    )
    merged = await app.settled(1)
    assert merged.stage == Done(merge_commit=app.main_tip())
    assert git("show", "main:a.txt", cwd=app.repo) == "human and agent\n"
    assert app.main_log()[:2] == ["musher: merge #1 Login page", "human edit"]


async def test_a_failing_gate_fails_the_merge_with_its_output_tail(
    app: MergeRoom, tmp_path: Path
) -> None:
    await app.set_gates(
        python_gate(tmp_path, "print('checking')\nprint('boom: 3 tests failed')\nexit(3)")
    )
    await to_merge(app)
    app.agent_commit(1, {"a.txt": "x\n"})
    tip = app.main_tip()
    await app.say("move 1 merge")

    item = await app.settled(1)

    assert isinstance(item.stage, MergeFailure) and item.stage.kind == "gates"
    assert item.stage.reason.startswith(f"Gate `{sys.executable} {tmp_path}/gate0.py` failed")
    assert item.stage.reason.endswith("failed on the merged code:\nchecking\nboom: 3 tests failed")
    assert app.main_tip() == tip and app.merge_dirs() == []


async def test_a_dirty_base_checkout_is_never_committed_and_blocks_an_overlapping_merge(
    app: MergeRoom,
) -> None:
    (app.repo / "a.txt").write_text("base\n")
    git("add", "a.txt", cwd=app.repo)
    git("commit", "--quiet", "-m", "base a", cwd=app.repo)
    await to_merge(app)
    app.agent_commit(1, {"a.txt": "agent\n"})
    (app.repo / "a.txt").write_text("my unsaved work\n")  # uncommitted, in the base checkout
    tip = app.main_tip()
    await app.say("move 1 merge")

    item = await app.settled(1)

    assert isinstance(item.stage, MergeFailure) and item.stage.kind == "dirty-base"
    assert "would overwrite: a.txt. Commit or stash them, then `retry_merge 1`." in (
        item.stage.reason
    )
    assert app.main_tip() == tip
    assert (app.repo / "a.txt").read_text() == "my unsaved work\n"
    assert git("status", "--porcelain", cwd=app.repo) == " M a.txt\n"


async def test_uncommitted_files_the_merge_does_not_touch_stay_uncommitted(
    app: MergeRoom,
) -> None:
    await app.set_gates("true", commit=False)  # .musher/project.toml is now modified
    await to_merge(app)
    app.agent_commit(1, {"a.txt": "agent\n"})
    await app.say("move 1 merge")

    item = await app.settled(1)

    assert item.stage == Done(merge_commit=app.main_tip())
    changed = git("show", "--name-only", "--format=", "main", cwd=app.repo).split()
    assert changed == ["a.txt"]  # the user's edit is not in the merge commit
    assert git("status", "--porcelain", cwd=app.repo) == " M .musher/project.toml\n"


async def test_a_base_branch_checked_out_nowhere_moves_by_a_checked_ref_update(
    app: MergeRoom,
) -> None:
    git("checkout", "--quiet", "-b", "elsewhere", cwd=app.repo)
    (app.repo / "scratch.txt").write_text("mine\n")
    await to_merge(app)
    app.agent_commit(1, {"a.txt": "agent\n"})
    await app.say("move 1 merge")

    item = await app.settled(1)

    assert item.stage == Done(merge_commit=app.main_tip())
    assert git("show", "main:a.txt", cwd=app.repo) == "agent\n"
    assert git("branch", "--show-current", cwd=app.repo).strip() == "elsewhere"
    assert not (app.repo / "a.txt").exists()  # the checkout was left alone
    assert git("status", "--porcelain", cwd=app.repo) == "?? scratch.txt\n"


async def test_a_merge_that_landed_before_a_crash_is_recorded_not_repeated(
    app: MergeRoom,
) -> None:
    await to_merge(app)
    app.agent_commit(1, {"a.txt": "agent\n"})
    record = await app.room.core.engine.project(PROJECT)
    job = MergeJob(record, 1, "Login page", app.room.data_dir, LocalSandbox(),
                   ("Musher Test", "musher@example.org"))  # fmt: skip
    landed = await merge_item(job)  # the daemon died right after this, before recording it
    log = app.main_log()

    await app.say("move 1 merge")
    item = await app.settled(1)

    assert item.stage == Done(merge_commit=landed.commit)
    assert app.main_log() == log
    assert "(found from an earlier, interrupted merge)" in await app.wait_line("✅")


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
    await queue.reconcile()  # idempotent: nothing left, nothing done
    await queue.aclose()


async def test_git_shows_agent_branches_and_the_base_checkout(app: MergeRoom) -> None:
    assert await app.say("git") == (
        f"app ({app.repo}): on main, clean.\nNo agent branches (musher/app-N)."
    )
    await to_merge(app, "One")
    await to_merge(app, "Two")
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


async def test_the_merge_gates_run_in_bwrap_in_the_temporary_worktree_blind_to_the_data_dir(
    tmp_path: Path,
) -> None:
    need_bwrap()
    async with merge_room(tmp_path, {"MUSHER_PROJECTS__SANDBOX": "bwrap"}) as app:
        database = app.room.data_dir / "musher.db"
        (app.repo / "check.py").write_text(
            "import os, pathlib\n"
            "assert pathlib.Path('a.txt').read_text() == 'agent\\n', 'not the merged code'\n"
            f"assert not os.path.exists({str(database)!r}), 'the data dir is visible'\n"
            "print('checked', os.getcwd())\n"
        )
        git("add", "check.py", cwd=app.repo)
        git("commit", "--quiet", "-m", "a gate", cwd=app.repo)
        await app.set_gates(f"{sys.executable} check.py")
        await to_merge(app)
        app.agent_commit(1, {"a.txt": "agent\n"})
        await app.say("move 1 merge")

        item = await app.settled(1)

        assert item.stage == Done(merge_commit=app.main_tip()), item.stage
        assert database.exists() and app.merge_dirs() == []


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
        await to_merge(app, title)
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
    await to_merge(app)
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
    await to_merge(app)
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
