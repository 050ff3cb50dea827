"""The project registry (N1, N3): ops, seeding and restarts, `project set`, `delete project`,
`projects` with counts, and the stack table."""

from __future__ import annotations

import sqlite3
import tomllib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.commands.registry import CommandContext
from bot.db import Database
from bot.messages import Session
from bot.schema import DAEMON_SCHEMA
from bot.tools import tool_caller, tools_for
from pipeline import audit
from pipeline.keys import load_or_create
from pipeline.model import SystemOrigin
from pipeline.ops import CreateProject
from pipeline.projects import file_changes
from pipeline.stacks import detect_stack
from pipeline.store import OpStore
from tests.unit.project_env import ProjectRoom, project_room


@pytest.fixture
async def room(tmp_path: Path) -> AsyncIterator[ProjectRoom]:
    async with project_room(tmp_path) as r:
        yield r


async def test_projects_lists_counts_per_column_and_marks_this_room(room: ProjectRoom) -> None:
    await room.say("new story one")
    await room.say("new story two")
    await room.say("move 2 coding")
    await room.say("new project shop")

    reply = await room.say("projects")

    home = room.root.parent / "home"
    assert reply.splitlines() == [
        "Projects:",
        f"  home (this room) — {home}, generic, branch main, UTC; backlog 1, coding 1",
        f"  shop — {room.root / 'shop'}, generic, branch main, UTC; no items",
        "Change this room's project with `switch <project>`.",
    ]


async def test_project_set_changes_the_registry_and_the_projects_file(room: ProjectRoom) -> None:
    await room.say("new project shop")
    await room.say("switch shop")

    assert await room.say("project set timezone Europe/Paris") == (
        "shop: timezone is now Europe/Paris."
    )
    assert await room.say("project set gates pytest -q; ruff check .") == (
        "shop: gates is now pytest -q; ruff check .."
    )
    assert await room.say("project set qa server") == "shop: qa is now server."
    record = await room.core.engine.project("shop")
    assert (record.timezone, record.qa) == ("Europe/Paris", "server")
    assert record.gates == (("pytest", "-q"), ("ruff", "check", "."))
    text = (room.root / "shop" / ".musher" / "project.toml").read_text()
    assert tomllib.loads(text)["gates"] == [["pytest", "-q"], ["ruff", "check", "."]]
    assert (await room.ops()).count("project.set") == 3


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("project set timezone Mars/Olympus", "Unknown time zone 'Mars/Olympus'"),
        ("project set base_branch -x", "Bad branch name '-x'"),
        ("project set qa maybe", "qa must be one of human, server, agent."),
        ("project set gates 'unclosed", "Cannot read the gates"),
        ("project set remote -oProxyCommand=x", "Refusing the git URL"),
        ("project set colour red", "Usage: project set"),
    ],
)
async def test_project_set_refuses_bad_values(room: ProjectRoom, text: str, expected: str) -> None:
    before = await room.ops()

    assert (await room.say(text)).startswith(expected)
    assert await room.say("project set timezone UTC", admin=False) == (
        "Sorry, `project set` is for admins only."
    )
    assert await room.ops() == before


async def test_delete_moves_rooms_to_the_default_tells_them_and_never_reuses_numbers(
    room: ProjectRoom,
) -> None:
    await room.say("new project shop")
    for session in ("web:lobby", "web:side"):
        await room.say("switch shop", session=session)
    await room.say("new story one")
    await room.say("new story two")
    await room.say("timer 1 +1h start")

    reply = await room.say("delete project shop")

    path = room.root / "shop"
    assert reply == (
        "Deleted project shop (cleared: project, 2 items, 1 timer, 2 rooms)."
        f" Its files are kept at {path}. This room now works on home."
    )
    assert room.told == [("web:side", "Project shop was deleted; this room now works on home.")]
    assert (path / ".git").is_dir()
    assert await room.say("status") == "home: 0 items. Add one with `new story <title>`."
    assert await room.say("switch shop") == "No project 'shop'. Projects: home."

    assert (await room.say("delete project home")).startswith("home is the default project;")
    assert await room.say("new project shop") == (  # its files are still there
        f"{path} already exists and is not an empty directory."
    )


async def test_purging_files_needs_yes_and_a_recreated_project_continues_its_numbers(
    room: ProjectRoom,
) -> None:
    await room.say("new project shop")
    await room.say("switch shop")
    await room.say("new story one")
    before = await room.ops()

    assert (await room.say("delete project shop --purge-files")).endswith(
        "To confirm: `delete project shop --purge-files --yes`. Nothing changed."
    )
    assert await room.ops() == before and (room.root / "shop").is_dir()

    reply = await room.say("delete project shop --purge-files --yes")
    path = room.root / "shop"
    assert reply.endswith(f"Its files at {path} were deleted. This room now works on home.")
    assert not (room.root / "shop").exists()

    assert (await room.say("new project shop")).startswith("Created project shop.")
    await room.say("switch shop")
    assert await room.say("new story again") == "Created #2 again (story) in shop."


async def test_delete_is_for_admins(room: ProjectRoom) -> None:
    await room.say("new project shop")

    assert await room.say("delete project shop", admin=False) == (
        "Sorry, `delete project` is for admins only."
    )
    assert await room.say("delete project shop", admin=False, via="tool") == (
        "Sorry, `delete project` is for admins only."
    )
    assert (await room.core.engine.project("shop")).name == "shop"


async def test_a_restart_from_another_directory_keeps_the_registry_and_rooms(
    tmp_path: Path,
) -> None:
    async with project_room(tmp_path, cwd_name="first") as room:
        await room.say("new project shop")
        await room.say("switch shop", session="web:side")
        await room.say("new story stays")

    async with project_room(tmp_path, cwd_name="second") as room:
        assert room.core.engine.default_project == "first"
        names = [p.name for p in await room.core.engine.projects()]
        assert names == ["first", "shop"]
        assert await room.say("status 1") != "No item #1 in first."
        assert (await room.say("status", session="web:side")).startswith("shop: 0 items")
        assert "project.add" not in (await room.ops())[3:]


async def test_entries_and_the_default_are_seeded_once(tmp_path: Path) -> None:
    (tmp_path / "projects" / "api").mkdir(parents=True)
    (tmp_path / "projects" / "api" / "go.mod").write_text("module api\n")
    env = {
        "MUSHER_PROJECTS__DEFAULT": "main-app",
        "MUSHER_PROJECTS__ENTRY": '[{"name": "api", "remote": "git@example.org:me/api.git"}]',
    }
    for _ in range(2):
        async with project_room(tmp_path, env) as room:
            records = {p.name: p for p in await room.core.engine.projects()}
            assert room.core.engine.default_project == "main-app"
            assert sorted(records) == ["api", "main-app"]
            api = records["api"]
            assert (api.stack, api.gates) == ("go", (("go", "test", "./..."),))
            assert records["api"].remote == "git@example.org:me/api.git"
            assert records["main-app"].path == str(tmp_path / "home")
            assert (await room.ops()).count("project.add") == 2


async def test_the_op_log_replays_to_the_same_registry(room: ProjectRoom) -> None:
    await room.say("new project shop")
    await room.say("project set timezone Asia/Tokyo", session="web:lobby")
    await room.say("switch shop")
    await room.say("project set gates make test")
    await room.say("new project gone")
    await room.say("delete project gone")

    report = await audit.verify(room.db)

    assert report.ok, report


@pytest.mark.parametrize(
    ("markers", "stack", "warned"),
    [
        (["Cargo.toml"], "rust", False),
        (["package.json"], "node", False),
        (["tsconfig.json"], "node", False),
        (["go.mod"], "go", False),
        (["pyproject.toml"], "python", False),
        (["requirements.txt"], "python", False),
        (["setup.py"], "python", False),
        (["Gemfile"], "ruby", False),
        (["pom.xml"], "jvm", False),
        (["build.gradle"], "jvm", False),
        (["build.gradle.kts"], "jvm", False),
        (["Gemfile", "go.mod", "requirements.txt"], "go", True),
        ([], "generic", False),
    ],
)
def test_the_stack_table(tmp_path: Path, markers: list[str], stack: str, warned: bool) -> None:
    for marker in markers:
        (tmp_path / marker).write_text("")

    detected = detect_stack(tmp_path)

    assert detected.stack.name == stack
    assert bool(detected.warning) is warned


async def test_a_projects_table_of_an_older_version_verifies_and_migrates(tmp_path: Path) -> None:
    path = tmp_path / "m.db"
    db = await Database.open(path, DAEMON_SCHEMA)
    store = await OpStore.open(db, load_or_create(tmp_path))
    await store.append(CreateProject("old", "/srv/old", "main", "UTC"), SystemOrigin("t", "x"))
    await db.aclose()
    with sqlite3.connect(path) as conn:  # the table as the first version wrote it
        conn.executescript(
            "CREATE TABLE p AS SELECT name, path, base_branch, timezone, origin, created_at"
            " FROM projects; DROP TABLE projects; ALTER TABLE p RENAME TO projects;"
        )

    db = await Database.open(path, DAEMON_SCHEMA)
    assert (await audit.verify(db)).ok
    store = await OpStore.open(db, load_or_create(tmp_path))
    [record] = await store.projects()
    assert (record.name, record.stack, record.sandbox) == ("old", "generic", "none")
    assert (record.qa, record.gates) == ("human", ())
    assert (await audit.verify(db)).ok
    await db.aclose()


async def test_the_llm_gets_the_project_commands_under_the_admin_rule(room: ProjectRoom) -> None:
    admin = {t.name for t in tools_for(room.core.registry, admin=True)}
    other = {t.name for t in tools_for(room.core.registry, admin=False)}

    assert {"new_project", "projects", "switch", "delete_project", "project_set"} <= admin
    assert {"projects", "switch"} <= other
    assert not {"new_project", "delete_project", "project_set"} & other

    ctx = CommandContext(Session.of("web:lobby"), "alice", True, "tool")
    call = tool_caller(room.core.registry, ctx)
    reply = await call("new_project", {"name": "tooled", "stack": "go"})
    assert reply.startswith("Created project tooled.") and "Stack: go" in reply
    assert (await call("switch", {"project": "tooled"})).startswith("This room now works on")


async def test_an_edited_projects_file_yields_the_change_to_apply(room: ProjectRoom) -> None:
    await room.say("new project shop")
    record = await room.core.engine.project("shop")
    assert file_changes(record) is None
    path = room.root / "shop" / ".musher" / "project.toml"
    text = path.read_text().replace('timezone = "UTC"', 'timezone = "Asia/Tokyo"')
    path.write_text(text.replace("gates = []", 'gates = [["make", "test"]]'))

    change = file_changes(record)

    assert change is not None and change.settings() == {
        "timezone": "Asia/Tokyo", "gates": (("make", "test"),),
    }  # fmt: skip
    path.write_text('qa = "never"\n')
    assert file_changes(record) is None  # invalid: the registry's settings stay
