"""The ``bwrap`` sandbox: bubblewrap around each command (Debian package ``bubblewrap``).

Inside, the whole filesystem is read-only, the project directory is bind-mounted
read-write, ``/tmp`` is private, the daemon's data dir (its database and keys) is an empty
tmpfs, the command sees its own pid namespace, and the network is cut when
``[projects] sandbox_network = false``. The environment loses musher's settings and
anything that looks like a secret.
"""

from __future__ import annotations

import os
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
    clean_env,
    inside,
)

INSTALL_HINT = "bubblewrap is not installed: `apt-get install -y bubblewrap` (Debian/Ubuntu)"


class BwrapSandbox:
    """Each :meth:`run` is one ``bwrap`` invocation; nothing persists between runs."""

    name = "bwrap"

    def __init__(
        self, hidden: Sequence[Path] = (), *, network: bool = True, program: str = "bwrap"
    ) -> None:
        self._hidden = tuple(Path(p).resolve() for p in hidden)
        self._network = network
        self._program = program

    def argv(self, project: SandboxProject, command: Sequence[str], cwd: Path) -> list[str]:
        """The full ``bwrap`` command line for ``command`` (public for tests and logs)."""
        root = project.path.resolve()
        writable = [(root, "--bind"), *((p.resolve(), "--bind") for p in project.writable)]
        mounts = [(p, "--tmpfs") for p in self._hidden if p.is_dir()] + writable
        mounts.sort(key=lambda m: len(m[0].parts))  # parents first, so children show through
        args = [self._program, "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc",
                "--tmpfs", "/tmp"]  # fmt: skip
        for path, how in mounts:
            args += [how, str(path)] if how == "--tmpfs" else [how, str(path), str(path)]
        args += ["--unshare-pid", "--die-with-parent", "--new-session"]
        if not self._network:
            args.append("--unshare-net")
        return [*args, "--chdir", str(cwd), "--", *command]

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
        if shutil.which(self._program) is None:
            raise SandboxError(INSTALL_HINT)
        where = inside(project, cwd)
        env = clean_env(dict(os.environ))
        return await process.run(self.argv(project, argv, where), env=env, timeout_s=timeout_s)

    def launch(self, project: SandboxProject, argv: Sequence[str], cwd: Path) -> Launch:
        if shutil.which(self._program) is None:
            raise SandboxError(INSTALL_HINT)
        where = inside(project, cwd)
        return Launch(self.argv(project, argv, where), None, clean_env(dict(os.environ)))

    async def stop(self, project: SandboxProject) -> None:
        """Nothing keeps running between commands (``--die-with-parent``)."""

    async def remove(self, project: SandboxProject) -> None:
        """Nothing was made for the project."""

    async def status(self, project: SandboxProject) -> SandboxStatus:
        """Ready when ``bwrap`` is installed and can create its namespaces here."""
        if shutil.which(self._program) is None:
            return SandboxStatus(False, INSTALL_HINT)
        probe = await process.run(
            [self._program, "--ro-bind", "/", "/", "--unshare-pid", "--", "true"], timeout_s=30
        )
        if not probe.ok:
            detail = probe.output.strip().splitlines()[-1:] or ["no output"]
            return SandboxStatus(False, f"bubblewrap cannot run here: {detail[0]}")
        return SandboxStatus(True, "bubblewrap: project writable, the rest read-only")
