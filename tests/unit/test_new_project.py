"""`new project` (N2) with real git: init, clone from `git daemon`, validation, rollback."""

from __future__ import annotations

import subprocess
import tomllib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from pipeline.project_setup import ProjectSetup, SetupConfig
from pipeline.projects import Projects
from pipeline.sandbox import ContainerSandbox
from tests.fakes.git_server import bare_repo, git, git_daemon, password_wall
from tests.unit.project_env import ProjectRoom, project_room


@pytest.fixture
async def room(tmp_path: Path) -> AsyncIterator[ProjectRoom]:
    async with project_room(tmp_path) as r:
        yield r


def log_of(path: Path) -> list[str]:
    return git("log", "--format=%an <%ae> %s", cwd=path).splitlines()


async def test_a_new_project_is_a_repository_with_settings_and_a_first_commit(
    room: ProjectRoom,
) -> None:
    reply = await room.say("new project shop --stack python --branch develop")

    path = room.root / "shop"
    assert reply.splitlines() == [
        "Created project shop.",
        f"Path: {path}",
        "Stack: python; gates: pytest",
        "Branch: develop (new repository, first commit made)",
        "Sandbox: none — no sandbox: commands run as plain processes",
        "Next: `switch shop` to work on it in this room, then `new story <title>`;"
        " `project set gates <cmd>; <cmd>` changes the gates.",
    ]
    assert log_of(path) == ["Musher Test <musher@example.org> Start shop with musher"]
    assert git("branch", "--show-current", cwd=path).strip() == "develop"
    settings = tomllib.loads((path / ".musher" / "project.toml").read_text())
    assert settings == {"stack": "python", "base_branch": "develop", "timezone": "UTC",
                        "qa": "human", "gates": [["pytest"]]}  # fmt: skip
    assert ".musher/*" in (path / ".gitignore").read_text().splitlines()
    assert git("status", "--porcelain", cwd=path) == ""  # settings and .gitignore committed
    assert (await room.ops())[-1] == "project.add"
    assert "shop — " in await room.say("projects")
    assert await room.say("switch shop") == f"This room now works on shop ({path})."
    assert await room.say("new story First") == "Created #1 First (story) in shop."


async def test_a_clone_detects_the_stack_reports_progress_and_keeps_the_remote_branch(
    room: ProjectRoom, tmp_path: Path
) -> None:
    served = tmp_path / "served"
    bare_repo(served, "app", {"Cargo.toml": "[package]\n", "package.json": "{}\n"})
    with git_daemon(served) as base:
        reply = await room.say(f"new project app --git {base}/app.git")

    path = room.root / "app"
    assert reply.splitlines()[:5] == [
        "Created project app.",
        f"Path: {path}",
        "Stack: rust; gates: cargo test",
        f"Branch: trunk (cloned from {base}/app.git)",
        "Sandbox: none — no sandbox: commands run as plain processes",
    ]
    assert "Several stacks match (rust, node); using rust." in reply
    assert room.told[0] == ("web:lobby", f"Cloning {base}/app.git into {path}…")
    assert (path / "Cargo.toml").is_file() and log_of(path)[-1].endswith(" first")
    record = await room.core.engine.project("app")
    assert (record.remote, record.base_branch, record.stack) == (f"{base}/app.git", "trunk", "rust")


async def test_a_failed_clone_rolls_everything_back(room: ProjectRoom, tmp_path: Path) -> None:
    (tmp_path / "served").mkdir()
    before = await room.ops()
    with git_daemon(tmp_path / "served") as base:
        reply = await room.say(f"new project ghost --git {base}/missing.git")

    failed = f"`new project ghost` failed while cloning {base}/missing.git: git clone failed"
    assert reply.startswith(failed)
    assert reply.endswith("Rolled back: the directory.")
    assert not (room.root / "ghost").exists()
    assert await room.ops() == before
    assert "ghost" not in await room.say("projects")


async def test_a_clone_that_asks_for_a_password_fails_at_once_without_echoing_it(
    room: ProjectRoom, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GIT_SSL_NO_VERIFY", "1")
    before = await room.ops()
    with password_wall(tmp_path) as url:
        host = url.removeprefix("https://")
        reply = await room.say(f"new project locked --git https://bob:hunter2@{host}/r.git")

    assert "hunter2" not in reply and all("hunter2" not in line for _, line in room.told)
    assert f"failed while cloning https://***@{host}/r.git" in reply
    assert "Rolled back: the directory." in reply
    assert not (room.root / "locked").exists() and await room.ops() == before


async def test_the_same_name_twice_is_refused_without_touching_anything(room: ProjectRoom) -> None:
    await room.say("new project shop")
    (room.root / "shop" / "work.txt").write_text("mine")
    before = await room.ops()

    assert await room.say("new project shop") == (
        "A project called shop already exists; nothing changed."
    )
    assert (room.root / "shop" / "work.txt").read_text() == "mine"
    assert await room.ops() == before


BAD = [
    ("new project ../etc", "Bad project name '../etc'"),
    ("new project Shop", "Bad project name 'Shop'"),
    ("new project ѕhop", "Bad project name 'ѕhop'"),  # Cyrillic ѕ
    ("new project -x", "Bad project name '-x'"),
    ("new project " + "a" * 10_000, "Bad project name 'aaaa"),
    ("new project p --path ../outside", "Refusing the path '../outside': no '..' parts."),
    ("new project p --path /etc", "/etc already exists and is not an empty directory."),
    ("new project p --git -oProxyCommand=touch%20/tmp/pwned", "Refusing the git URL"),
    ("new project p --git ext::sh", "Refusing the git URL"),
    ("new project p --git file:///tmp/x.git", "Refusing the git URL"),
    ("new project p --git /tmp/x.git", "Refusing the git URL"),
    ("new project p --git http://example.org/x.git", "Refusing the git URL"),
    ("new project p --stack cobol", "Unknown stack 'cobol'."),
    ("new project p --branch -delete", "Bad branch name '-delete'"),
    ("new project p --branch a..b", "Bad branch name 'a..b'"),
    ("new project p --path", "Usage: new project <name>"),
]


@pytest.mark.parametrize(("text", "expected"), BAD)
async def test_bad_input_changes_nothing(room: ProjectRoom, text: str, expected: str) -> None:
    before = await room.ops()

    reply = await room.say(text)

    assert reply.startswith(expected) or expected in reply, reply
    assert "Created" not in reply and "internal error" not in reply
    assert await room.ops() == before
    assert not room.root.exists() or not any(room.root.iterdir())


async def test_the_data_dir_is_never_a_project(room: ProjectRoom) -> None:
    reply = await room.say(f"new project p --path {room.data_dir / 'sub'}")

    assert reply == f"Refusing {room.data_dir / 'sub'}: it overlaps musher's data directory."


async def test_an_admin_may_use_an_empty_directory_outside_the_root(
    room: ProjectRoom, tmp_path: Path
) -> None:
    (tmp_path / "elsewhere").mkdir()

    reply = await room.say(f"new project far --path {tmp_path / 'elsewhere'}")

    assert reply.startswith("Created project far.")
    assert (tmp_path / "elsewhere" / ".git").is_dir()


async def test_only_admins_and_only_on_an_admins_behalf(room: ProjectRoom) -> None:
    assert await room.say("new project p", admin=False) == (
        "Sorry, `new project` is for admins only."
    )
    tools = room.core.registry.get("new project")
    assert tools is not None and tools.destructive
    assert not room.root.exists()


async def test_without_a_git_identity_the_reply_says_what_to_set(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", "/dev/null")
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    monkeypatch.setenv("HOME", str(tmp_path))
    env = {"MUSHER_PROJECTS__GIT_USER_NAME": "", "MUSHER_PROJECTS__GIT_USER_EMAIL": ""}
    async with project_room(tmp_path, env) as room:
        reply = await room.say("new project p")

    assert reply.startswith("No git identity for the first commit: set [projects] git_user_name")
    assert not (room.root / "p").exists()


async def test_a_missing_container_runtime_still_creates_the_project(
    room: ProjectRoom, tmp_path: Path
) -> None:
    setup = ProjectSetup(
        Projects(room.core.engine),
        ContainerSandbox("docker", cli=str(tmp_path / "no-docker")),
        SetupConfig(root=room.root, data_dir=room.data_dir, git_user_name="T",
                    git_user_email="t@example.org"),
    )  # fmt: skip
    room.core.registry.provide(setup=setup)

    reply = await room.say("new project boxed")

    assert reply.startswith("Created project boxed.")
    assert "Sandbox: docker — not ready: Docker is not installed: see https://docs.docker.com" in (
        reply
    )


def test_git_is_installed() -> None:
    assert subprocess.run(["git", "--version"], capture_output=True, check=False).returncode == 0
