"""The ``none`` sandbox: plain processes in the project directory, no confinement."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from pipeline import process
from pipeline.sandbox.base import Launch, RunResult, SandboxProject, SandboxStatus, inside


class LocalSandbox:
    """Runs commands as the daemon's user, in the project directory (trusted code only)."""

    name = "none"

    async def prepare(self, project: SandboxProject) -> SandboxStatus:
        return await self.status(project)

    async def run(
        self,
        project: SandboxProject,
        argv: Sequence[str],
        *,
        cwd: Path | None = None,
        timeout_s: float = 600.0,
    ) -> RunResult:
        return await process.run(argv, cwd=inside(project, cwd), timeout_s=timeout_s)

    def launch(self, project: SandboxProject, argv: Sequence[str], cwd: Path) -> Launch:
        return Launch(list(argv), inside(project, cwd), None)

    async def stop(self, project: SandboxProject) -> None:
        """Nothing keeps running between commands."""

    async def remove(self, project: SandboxProject) -> None:
        """Nothing was made for the project."""

    async def status(self, project: SandboxProject) -> SandboxStatus:
        return SandboxStatus(True, "no sandbox: commands run as plain processes")
