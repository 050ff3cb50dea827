"""The ``docker`` and ``podman`` sandboxes: one long-lived container per project.

The image is per stack: ``musher-base`` from ``images/base.Dockerfile`` plus the stack's
overlay ``images/<stack>.Dockerfile`` (both shipped with musher), built on first use. The
container runs as a non-root user with ``--cap-drop=ALL`` and ``no-new-privileges``, never
``--privileged``, publishes no ports (so nothing listens beyond 127.0.0.1), has the project
bind-mounted at ``/workspace`` and no network when ``[projects] sandbox_network = false``.
Commands run in it with ``exec``. Both CLIs take the same arguments.
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path

from pipeline import process
from pipeline.sandbox.base import (
    Launch,
    RunResult,
    SandboxError,
    SandboxProject,
    SandboxStatus,
    inside,
)

IMAGES = Path(__file__).resolve().parent / "images"
WORKSPACE = "/workspace"
BASE_IMAGE = "musher-base"
_HINTS = {
    "docker": "Docker is not installed: see https://docs.docker.com/engine/install/",
    "podman": "Podman is not installed: `apt-get install -y podman`",
}


def container_name(project: SandboxProject) -> str:
    return f"musher-{project.name}"


def image_name(stack: str) -> str:
    return f"musher-project-{stack}"


class ContainerSandbox:
    """``runtime`` is ``docker`` or ``podman``; ``cli`` the program (default: on PATH)."""

    def __init__(self, runtime: str, *, network: bool = True, cli: str | None = None) -> None:
        self.name = runtime
        self._cli = cli or runtime
        self._network = network

    def _missing(self) -> str | None:
        return None if shutil.which(self._cli) else _HINTS.get(self.name, f"{self._cli} missing")

    async def _call(self, *args: str, timeout_s: float = 1800.0) -> RunResult:
        return await process.run([self._cli, *args], timeout_s=timeout_s)

    def create_args(self, project: SandboxProject) -> list[str]:
        """The ``create`` arguments for the project's container (public for tests)."""
        owner = project.path.stat().st_uid
        gid = project.path.stat().st_gid
        user = f"{owner}:{gid}" if owner else "1000:1000"
        args = ["create", "--name", container_name(project), "--user", user,
                "--cap-drop=ALL", "--security-opt", "no-new-privileges",
                "--label", f"musher.project={project.name}",
                "--volume", f"{project.path.resolve()}:{WORKSPACE}:rw",
                "--workdir", WORKSPACE]  # fmt: skip
        if self.name == "podman":
            args.append("--userns=keep-id")
        if not self._network:
            args += ["--network", "none"]
        return [*args, image_name(project.stack), "sleep", "infinity"]

    async def _build(self, stack: str) -> RunResult:
        for tag, dockerfile, extra in (
            (BASE_IMAGE, "base.Dockerfile", []),
            (image_name(stack), f"{stack}.Dockerfile", ["--build-arg", f"BASE={BASE_IMAGE}"]),
        ):
            if (await self._call("image", "inspect", tag, timeout_s=60)).ok:
                continue
            built = await self._call(
                "build", "--tag", tag, *extra, "--file", str(IMAGES / dockerfile), str(IMAGES)
            )
            if not built.ok:
                return built
        return RunResult(0, "")

    async def prepare(self, project: SandboxProject) -> SandboxStatus:
        """Build the stack's image if missing, then create and start the container."""
        if hint := self._missing():
            return SandboxStatus(False, hint)
        if (await self.status(project)).ready:
            return SandboxStatus(True, f"{self.name} container {container_name(project)}")
        built = await self._build(project.stack)
        if not built.ok:
            raise SandboxError(f"building {image_name(project.stack)} failed: {_last(built)}")
        await self._call("rm", "--force", container_name(project), timeout_s=60)
        for args in (self.create_args(project), ["start", container_name(project)]):
            done = await self._call(*args, timeout_s=120)
            if not done.ok:
                raise SandboxError(f"{self.name} {args[0]} failed: {_last(done)}")
        return SandboxStatus(True, f"{self.name} container {container_name(project)}")

    async def run(
        self,
        project: SandboxProject,
        argv: Sequence[str],
        *,
        cwd: Path | None = None,
        timeout_s: float = 600.0,
    ) -> RunResult:
        if hint := self._missing():
            raise SandboxError(hint)
        where = inside(project, cwd).relative_to(project.path.resolve())
        workdir = f"{WORKSPACE}/{where}" if where.parts else WORKSPACE
        return await self._call(
            "exec", "--workdir", workdir, container_name(project), *argv, timeout_s=timeout_s
        )

    def launch(self, project: SandboxProject, argv: Sequence[str], cwd: Path) -> Launch:
        """``exec -i`` in the project's container (the prompt goes to its stdin)."""
        if hint := self._missing():
            raise SandboxError(hint)
        where = inside(project, cwd).relative_to(project.path.resolve())
        workdir = f"{WORKSPACE}/{where}" if where.parts else WORKSPACE
        argv = [self._cli, "exec", "-i", "--workdir", workdir, container_name(project), *argv]
        return Launch(argv, None, None)

    async def stop(self, project: SandboxProject) -> None:
        if self._missing() is None:
            await self._call("stop", "--time", "5", container_name(project), timeout_s=60)

    async def remove(self, project: SandboxProject) -> None:
        if self._missing() is None:
            await self._call("rm", "--force", container_name(project), timeout_s=60)

    async def status(self, project: SandboxProject) -> SandboxStatus:
        if hint := self._missing():
            return SandboxStatus(False, hint)
        state = await self._call(
            "inspect", "--format", "{{.State.Running}}", container_name(project), timeout_s=60
        )
        if state.ok and state.output.strip() == "true":
            return SandboxStatus(True, f"{self.name} container {container_name(project)} running")
        return SandboxStatus(False, f"{self.name} container {container_name(project)} not running")


def _last(result: RunResult) -> str:
    lines = result.output.strip().splitlines()
    return lines[-1] if lines else f"exit code {result.returncode}"
