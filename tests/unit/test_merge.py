"""Merging an item (A3) with real git: the whole path driven by commands, refusals before
anything is spent, conflicts, gate failures, dirty base checkouts, leftovers after a crash."""

from __future__ import annotations

import dataclasses
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from pipeline.agents.merge import MergeJob, merge_item
from pipeline.agents.naming import merge_path
from pipeline.model import Done, MergeFailure
from pipeline.sandbox import ContainerSandbox, LocalSandbox
from tests.fakes.git_server import git
from tests.unit.merge_env import PROJECT, MergeRoom, in_coding, merge_room, python_gate
from tests.unit.test_sandbox import calls, fake_cli, need_bwrap

# /tmp is private in bwrap: a venv under /tmp (as CI's clone's) is invisible there, so gates
# run in bwrap use the base interpreter (they need only the standard library).
BASE_PYTHON = os.path.realpath(sys.executable)


@pytest.fixture
async def app(tmp_path: Path) -> AsyncIterator[MergeRoom]:
    async with merge_room(tmp_path) as room:
        yield room


async def test_the_whole_path_ends_in_one_squash_commit_on_main(
    app: MergeRoom, tmp_path: Path
) -> None:
    await app.set_gates(
        python_gate(tmp_path, "import pathlib\nassert pathlib.Path('a.txt').read_text()")
    )
    before = app.main_log()
    await in_coding(app)
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
    await in_coding(app)
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
    await in_coding(app)
    await app.say("move 1 merge")
    item = await app.settled(1)
    assert item.stage == MergeFailure("no-branch", "There is no branch musher/app-1 to merge.")


async def test_a_conflict_names_the_file_and_retry_merge_lands_the_fix(app: MergeRoom) -> None:
    (app.repo / "a.txt").write_text("base\n")
    git("add", "a.txt", cwd=app.repo)
    git("commit", "--quiet", "-m", "base a", cwd=app.repo)
    await in_coding(app)
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
    await in_coding(app)
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
    await in_coding(app)
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
    await in_coding(app)
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
    await in_coding(app)
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
    await in_coding(app)
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
        await app.set_gates(f"{BASE_PYTHON} check.py")
        await in_coding(app)
        app.agent_commit(1, {"a.txt": "agent\n"})
        await app.say("move 1 merge")

        item = await app.settled(1)

        assert item.stage == Done(merge_commit=app.main_tip()), item.stage
        assert database.exists() and app.merge_dirs() == []


async def test_a_container_sandbox_gets_its_own_container_for_the_merge_worktree(
    app: MergeRoom, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cli, log = fake_cli(tmp_path, monkeypatch, "docker")
    await in_coding(app)
    app.agent_commit(1, {"a.txt": "agent\n"})
    record = dataclasses.replace(
        await app.room.core.engine.project(PROJECT), gates=(("make", "test"),)
    )
    job = MergeJob(record, 1, "Login page", app.room.data_dir, ContainerSandbox("docker", cli=cli),
                   ("Musher Test", "musher@example.org"))  # fmt: skip

    result = await merge_item(job)

    assert result.commit == app.main_tip()
    where = merge_path(app.room.data_dir, PROJECT, 1)
    made = calls(log)
    [create] = [c for c in made if c[0] == "create"]
    assert create[create.index("--volume") + 1] == f"{where}:/workspace:rw"
    assert ["exec", "--workdir", "/workspace", "musher-app-merge-1", "make", "test"] in made
    assert made[-1] == ["rm", "--force", "musher-app-merge-1"]  # removed with the worktree
    assert app.merge_dirs() == []
