"""The :class:`Sandbox` protocol and the values it speaks in."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from pipeline.process import Finished


@dataclass(frozen=True, slots=True)
class SandboxProject:
    """What a sandbox needs to know of a project: its name, directory and stack, and the
    other directories its code may write (an item worktree's repository ``.git``)."""

    name: str
    path: Path
    stack: str = "generic"
    writable: tuple[Path, ...] = ()


@dataclass(frozen=True, slots=True)
class Launch:
    """How to start a long-running program confined like :meth:`Sandbox.run` would: the
    argv, the directory to start it in and its environment (None: the daemon's own)."""

    argv: list[str]
    cwd: Path | None
    env: dict[str, str] | None


@dataclass(frozen=True, slots=True)
class SandboxStatus:
    """Whether the project's sandbox can run code now, and a line saying why (not)."""

    ready: bool
    detail: str


RunResult = Finished
"""A command's exit code (``None``: timed out, killed) and its output's tail."""


class Sandbox(Protocol):
    """Runs a project's code, confined as the runtime allows.

    ``run`` never goes through a shell and kills everything it started on timeout or
    cancel. ``prepare`` is idempotent (a second call reuses what the first made); ``stop``
    and ``remove`` are idempotent and never fail for something already gone.
    """

    name: str

    async def prepare(self, project: SandboxProject) -> SandboxStatus:
        """Make the project's sandbox ready (build an image, check the tool is there)."""
        ...

    async def run(
        self,
        project: SandboxProject,
        argv: Sequence[str],
        *,
        cwd: Path | None = None,
        timeout_s: float = 600.0,
    ) -> RunResult:
        """Run ``argv`` in ``cwd`` (the project directory, or a directory inside it).

        Raises:
            SandboxError: the runtime is missing or ``cwd`` is outside the project.
        """
        ...

    def launch(self, project: SandboxProject, argv: Sequence[str], cwd: Path) -> Launch:
        """How to start ``argv`` in ``cwd`` confined, for a caller that drives the process
        itself (a coding agent reading its prompt on stdin).

        Raises:
            SandboxError: the runtime is missing or ``cwd`` is outside the project.
        """
        ...

    async def stop(self, project: SandboxProject) -> None:
        """Stop whatever runs for the project (a container); its files stay."""
        ...

    async def remove(self, project: SandboxProject) -> None:
        """Stop and delete what :meth:`prepare` made (never the project's files)."""
        ...

    async def status(self, project: SandboxProject) -> SandboxStatus:
        """Whether the project's sandbox is ready, read from the runtime."""
        ...


class SandboxError(Exception):
    """A sandbox cannot run the command; nothing ran. The message says what to fix."""


def inside(project: SandboxProject, cwd: Path | None) -> Path:
    """``cwd`` (default: the project directory), checked to lie inside the project.

    Raises:
        SandboxError: ``cwd`` escapes the project.
    """
    root = project.path.resolve()
    where = (cwd or root).resolve()
    if where != root and root not in where.parents:
        raise SandboxError(f"{where} is outside project {project.name} ({root})")
    return where


_SECRET_WORDS = ("TOKEN", "SECRET", "PASSWORD", "PASSWD", "API_KEY", "CREDENTIAL")


def clean_env(environ: dict[str, str]) -> dict[str, str]:
    """``environ`` without musher's settings and anything that looks like a secret, for
    code run in a sandbox (it must not learn the daemon's tokens)."""
    return {
        k: v
        for k, v in environ.items()
        if not k.startswith("MUSHER_") and not any(w in k.upper() for w in _SECRET_WORDS)
    }
