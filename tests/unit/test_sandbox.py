"""Sandboxes (N4): bubblewrap for real, docker/podman against a fake CLI that records its
arguments (no container engine runs on these machines)."""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import pytest

from pipeline.gates import run_gates
from pipeline.sandbox import (
    BwrapSandbox,
    ContainerSandbox,
    LocalSandbox,
    SandboxProject,
    make_sandbox,
)
from pipeline.sandbox.base import SandboxError
from pipeline.sandbox.container import IMAGES

FAKE_CLI = Path(__file__).resolve().parents[1] / "fakes" / "container_cli.py"


@pytest.fixture
def project(tmp_path: Path) -> SandboxProject:
    path = tmp_path / "proj"
    (path / "sub").mkdir(parents=True)
    return SandboxProject("shop", path, "python")


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    data = tmp_path / "data"
    data.mkdir()
    (data / "node.key").write_text("secret key")
    return data


def need_bwrap() -> None:
    if shutil.which("bwrap") is None:
        if os.environ.get("CI") == "true":
            pytest.fail("bubblewrap is missing: apt-get install -y bubblewrap")
        pytest.skip("bubblewrap is not installed")


async def test_a_gate_in_bwrap_writes_the_project_but_cannot_read_the_data_dir(
    project: SandboxProject, data_dir: Path
) -> None:
    need_bwrap()
    sandbox = make_sandbox("bwrap", data_dir=data_dir)
    assert (await sandbox.prepare(project)).ready

    wrote = await run_gates(sandbox, project, (("sh", "-c", "echo built > out.txt"),))
    peeked = await run_gates(sandbox, project, (("cat", str(data_dir / "node.key")),))
    private_tmp = await sandbox.run(project, ["touch", str(project.path.parent / "escape")])
    home = await sandbox.run(project, ["touch", str(Path.home() / ".musher-escape-test")])

    assert wrote.passed and (project.path / "out.txt").read_text() == "built\n"
    assert not peeked.passed and peeked.failed == ("cat", str(data_dir / "node.key"))
    assert "No such file or directory" in peeked.tail and "secret" not in peeked.tail
    assert private_tmp.ok and not (project.path.parent / "escape").exists()  # private /tmp
    assert not home.ok and "Read-only file system" in home.output


async def test_bwrap_hides_secrets_in_the_environment_and_can_cut_the_network(
    project: SandboxProject, data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    need_bwrap()
    monkeypatch.setenv("MUSHER_TRANSPORTS__SLACK__BOT_TOKEN", "xoxb-hush4242")
    monkeypatch.setenv("GITHUB_TOKEN", "ghp-hush4343")
    sandbox = BwrapSandbox(hidden=(data_dir,), network=False)

    env = await sandbox.run(project, ["env"])
    net = await sandbox.run(project, ["cat", "/proc/net/dev"])

    assert env.ok and "hush42" not in env.output and "hush43" not in env.output
    assert net.ok and [ln.split(":")[0].strip() for ln in net.output.splitlines()[2:]] == ["lo"]


async def test_commands_stay_inside_the_project(project: SandboxProject, tmp_path: Path) -> None:
    sandbox = LocalSandbox()

    ran = await sandbox.run(project, ["pwd"], cwd=project.path / "sub")

    assert ran.output.strip() == str(project.path / "sub")
    with pytest.raises(SandboxError, match="is outside project shop"):
        await sandbox.run(project, ["pwd"], cwd=tmp_path)


async def test_a_failing_gate_reports_its_tail_and_stops_the_rest(project: SandboxProject) -> None:
    gates = (("sh", "-c", "echo one; exit 3"), ("sh", "-c", "touch never"))

    report = await run_gates(LocalSandbox(), project, gates)

    assert (report.passed, report.failed, report.tail) == (False, gates[0], "one")
    assert not (project.path / "never").exists()


def fake_cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str) -> tuple[str, Path]:
    """An executable ``name`` running the fake CLI, and the log of its calls."""
    program = tmp_path / "bin" / name
    program.parent.mkdir(exist_ok=True)
    program.write_text(f'#!/bin/sh\nexec {sys.executable} {FAKE_CLI} "$@"\n')
    program.chmod(0o755)
    log = tmp_path / f"{name}.log"
    monkeypatch.setenv("FAKE_CLI_LOG", str(log))
    return str(program), log


def calls(log: Path) -> list[list[str]]:
    return [json.loads(line) for line in log.read_text().splitlines()]


@pytest.mark.parametrize("runtime", ["docker", "podman"])
async def test_a_container_sandbox_builds_the_stack_image_and_runs_confined(
    project: SandboxProject, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, runtime: str
) -> None:
    cli, log = fake_cli(tmp_path, monkeypatch, runtime)
    sandbox = ContainerSandbox(runtime, network=False, cli=cli)

    status = await sandbox.prepare(project)
    ran = await sandbox.run(project, ["pytest", "-q"], cwd=project.path / "sub")
    await sandbox.prepare(project)  # idempotent: already running
    await sandbox.remove(project)

    assert status.ready and ran.output.strip() == "ran pytest -q in /workspace/sub"
    made = calls(log)
    builds = [c for c in made if c[0] == "build"]
    assert builds == [
        ["build", "--tag", "musher-base", "--file", str(IMAGES / "base.Dockerfile"), str(IMAGES)],
        ["build", "--tag", "musher-project-python", "--build-arg", "BASE=musher-base",
         "--file", str(IMAGES / "python.Dockerfile"), str(IMAGES)],
    ]  # fmt: skip
    [create] = [c for c in made if c[0] == "create"]
    assert "--cap-drop=ALL" in create and "--privileged" not in create
    assert create[create.index("--user") + 1] != "0:0"
    assert create[create.index("--volume") + 1] == f"{project.path}:/workspace:rw"
    assert create[create.index("--network") + 1] == "none"
    assert not any(arg in ("-p", "--publish", "--net=host") for arg in create)
    assert ("--userns=keep-id" in create) is (runtime == "podman")
    assert create[-3:] == ["musher-project-python", "sleep", "infinity"]
    assert ["start", "musher-shop"] in made and made[-1] == ["rm", "--force", "musher-shop"]
    assert sum(c[0] == "create" for c in made) == 1


def test_every_stack_has_an_overlay_dockerfile() -> None:
    from pipeline.stacks import STACK_NAMES

    for stack in STACK_NAMES:
        text = (IMAGES / f"{stack}.Dockerfile").read_text()
        assert text.startswith("ARG BASE=musher-base\nFROM ${BASE}\n")
    assert "USER musher" in (IMAGES / "base.Dockerfile").read_text()


async def test_a_missing_runtime_says_what_to_install(
    project: SandboxProject, tmp_path: Path
) -> None:
    for sandbox, hint in (
        (ContainerSandbox("podman", cli=str(tmp_path / "none")), "apt-get install -y podman"),
        (BwrapSandbox(program=str(tmp_path / "none")), "apt-get install -y bubblewrap"),
    ):
        status = await sandbox.prepare(project)
        assert not status.ready and hint in status.detail
        with pytest.raises(SandboxError, match="not installed"):
            await sandbox.run(project, ["true"])
