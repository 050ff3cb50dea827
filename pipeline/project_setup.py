"""``new project`` and ``delete project`` (N2, N3): create, roll back, remove.

:meth:`ProjectSetup.create` checks everything before it touches the disk, then creates the
directory, clones or inits the repository, detects the stack, writes
``.musher/project.toml`` and the ``.gitignore`` lines, prepares the sandbox and registers
the project last (one ``project.add`` op). A failure at any step undoes the earlier ones
(directory, sandbox) and says which step failed; a cancelled creation is undone too.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

from pipeline import gitops
from pipeline.errors import PipelineError
from pipeline.model import Origin
from pipeline.op_fields import PROJECT_NAME
from pipeline.process import OnLine
from pipeline.project_file import ProjectFile, ignore_runtime_files, write_project_file
from pipeline.project_ops import AddProject
from pipeline.projects import Projects, Removed, real_path
from pipeline.sandbox import Sandbox, SandboxProject, SandboxStatus
from pipeline.stacks import STACK_NAMES, detect_stack, gates_for, stack_named
from pipeline.store import ProjectRecord

log = logging.getLogger("musher.projects")
Progress = Callable[[str], Awaitable[None]]
PROGRESS_EVERY_S = 5.0


@dataclass(frozen=True, slots=True)
class SetupConfig:
    """The ``[projects]`` settings creation needs, and the daemon's data dir."""

    root: Path
    data_dir: Path
    timezone: str = "UTC"
    sandbox: str = "none"
    git_user_name: str | None = None
    git_user_email: str | None = None
    clone_timeout_s: float = 600.0


@dataclass(frozen=True, slots=True)
class NewProject:
    """What ``new project`` was asked for (unchecked)."""

    name: str
    stack: str | None = None
    git: str | None = None
    path: str | None = None
    branch: str | None = None


@dataclass(frozen=True, slots=True)
class Created:
    """A created project: its record, the sandbox's state and notes for the room."""

    record: ProjectRecord
    sandbox: SandboxStatus
    notes: tuple[str, ...] = ()


class SetupError(PipelineError):
    """Creation failed at a step and was rolled back; the message says which and why."""


@dataclass
class _Undo:
    """What a creation made so far, undone in reverse on failure."""

    steps: list[tuple[str, Callable[[], Awaitable[None]]]] = field(default_factory=list)
    step: str = "creating the directory"  # the step running now, for the failure message

    async def run(self) -> list[str]:
        done = []
        for label, action in reversed(self.steps):
            try:
                await action()
                done.append(label)
            except Exception:
                log.exception("rolling back %s failed", label)
        return done


class ProjectSetup:
    """Creates and deletes projects; the registry is :class:`~pipeline.projects.Projects`."""

    def __init__(self, projects: Projects, sandbox: Sandbox, config: SetupConfig) -> None:
        self.projects = projects
        self.sandbox = sandbox
        self.config = config

    async def create(self, ask: NewProject, origin: Origin, progress: Progress) -> Created:
        """Create the project ``ask`` describes. Nothing is touched until every check passed.

        Raises:
            PipelineError: a check failed (nothing was touched).
            SetupError: a step failed; what was made is gone again.
        """
        path, identity = await self._check(ask)
        undo = _Undo()
        try:
            self._make_dir(path, undo)
            branch = await self._repository(ask, path, progress, undo)
            undo.step = "writing .musher/project.toml"
            stack, notes = self._settings(ask, path, branch)
            if identity is not None:
                undo.step = "making the first commit"
                await gitops.init(path, branch, identity, f"Start {ask.name} with musher")
            undo.step = "preparing the sandbox"
            target = SandboxProject(ask.name, path, stack)
            undo.steps.append(("sandbox", lambda: self.sandbox.remove(target)))
            status = await self.sandbox.prepare(target)
            undo.step = "registering the project"
            record = await self.projects.add(self._change(ask, path, branch, stack), origin)
        except BaseException as err:
            undone = await asyncio.shield(undo.run())
            if not isinstance(err, Exception):
                raise
            tail = f" Rolled back: {', '.join(undone)}." if undone else ""
            why = str(err).rstrip(".") or type(err).__name__
            message = f"`new project {ask.name}` failed while {undo.step}: {why}.{tail}"
            raise SetupError(message) from err
        return Created(record, status, tuple(notes))

    async def _check(self, ask: NewProject) -> tuple[Path, tuple[str, str] | None]:
        """Every check of N2, before anything is made: the path and the commit identity."""
        if not PROJECT_NAME.fullmatch(ask.name):
            raise PipelineError(
                f"Bad project name {ask.name[:70]!r}: use a-z, 0-9 and '-' (starting with a"
                " letter or digit), at most 63 characters."
            )
        if await self.projects.find(ask.name) is not None:
            raise PipelineError(f"A project called {ask.name} already exists; nothing changed.")
        if ask.stack is not None and ask.stack not in STACK_NAMES:
            known = ", ".join(STACK_NAMES)
            raise PipelineError(f"Unknown stack {ask.stack[:40]!r}. Known: {known}.")
        if ask.git is not None:
            gitops.check_url(ask.git)
        if ask.branch is not None:
            gitops.check_branch(ask.branch)
        if shutil.which("git") is None:
            raise PipelineError("git is not installed on this machine: `apt-get install -y git`.")
        path = self._check_path(ask, await self.projects.engine.projects())
        identity = None
        if ask.git is None:
            identity = await gitops.identity(self.config.git_user_name, self.config.git_user_email)
        return path, identity

    def _check_path(self, ask: NewProject, records: list[ProjectRecord]) -> Path:
        root = self.config.root.resolve()
        given = Path(ask.path) if ask.path is not None else Path(ask.name)
        if ".." in given.parts or (ask.path is not None and not ask.path.strip()):
            raise PipelineError(f"Refusing the path {str(given)[:200]!r}: no '..' parts.")
        path = (root / given).resolve()  # an absolute --path replaces root
        if not given.is_absolute() and root not in path.parents:
            raise PipelineError(f"Refusing the path {str(given)[:200]!r}: it leaves {root}.")
        data = self.config.data_dir.resolve()
        if path == data or data in path.parents or path in data.parents:
            raise PipelineError(f"Refusing {path}: it overlaps musher's data directory.")
        if path.exists() and (not path.is_dir() or any(path.iterdir())):
            raise PipelineError(f"{path} already exists and is not an empty directory.")
        if given.is_absolute() and not path.parent.is_dir():
            raise PipelineError(f"{path.parent} does not exist; create it first.")
        for record in records:
            if Path(record.path).resolve() == path:
                raise PipelineError(f"{path} is already project {record.name}'s directory.")
        return path

    def _make_dir(self, path: Path, undo: _Undo) -> None:
        if path.exists():  # an empty directory: empty it again on failure, keep it
            undo.steps.append(("the directory's contents", lambda: asyncio.to_thread(_empty, path)))
            return
        path.mkdir(parents=True)
        undo.steps.append(("the directory", lambda: asyncio.to_thread(shutil.rmtree, path)))

    async def _repository(
        self,
        ask: NewProject,
        path: Path,
        progress: Progress,
        undo: _Undo,
    ) -> str:
        """Clone (reporting progress) or leave ``git init`` for after the files are
        written; returns the base branch."""
        if ask.git is None:
            return ask.branch or "main"
        undo.step = f"cloning {gitops.redact(ask.git)}"
        await progress(f"Cloning {gitops.redact(ask.git)} into {path}…")
        await gitops.clone(ask.git, path, ask.branch, timeout_s=self.config.clone_timeout_s,
                           on_line=_throttled(progress))  # fmt: skip
        return ask.branch or await gitops.current_branch(path)

    def _settings(self, ask: NewProject, path: Path, branch: str) -> tuple[str, list[str]]:
        """Detect the stack, write ``.musher/project.toml`` and ``.gitignore``; returns the
        stack and notes for the reply."""
        detected = detect_stack(path)
        stack = stack_named(ask.stack) if ask.stack else detected.stack
        notes = [detected.warning] if detected.warning and not ask.stack else []
        settings = ProjectFile(stack.name, branch, self.config.timezone, "human",
                               gates_for(stack, path))  # fmt: skip
        write_project_file(path, settings)
        ignore_runtime_files(path)
        if ask.git is not None:
            notes.append("Commit .musher/project.toml and .gitignore when you are happy with them.")
        return stack.name, notes

    def _change(self, ask: NewProject, path: Path, branch: str, stack: str) -> AddProject:
        remote = gitops.redact(ask.git) if ask.git else None
        return AddProject(
            ask.name, str(path), base_branch=branch, timezone=self.config.timezone, stack=stack,
            sandbox=self.sandbox.name, remote=remote, gates=gates_for(stack_named(stack), path),
        )  # fmt: skip

    async def delete(self, name: str, purge_files: bool, origin: Origin) -> tuple[Removed, str]:
        """Unregister ``name``, stop and remove its sandbox, and delete its directory when
        ``purge_files``. Returns the removal and a line about the files.

        Raises:
            ProjectNotFound, PipelineError: nothing changed.
        """
        record = await self.projects.engine.project(name)
        path = real_path(record.path)
        if purge_files:
            self._check_purge(path)
        removed = await self.projects.remove(name, origin)
        target = SandboxProject(name, path, record.stack)
        try:
            await self.sandbox.stop(target)
            await self.sandbox.remove(target)
        except Exception as err:  # the registration is gone already: report, don't undo
            log.exception("removing the sandbox of %s failed", name)
            return removed, f"Its sandbox could not be removed ({err}); files kept at {path}."
        if not purge_files:
            return removed, f"Its files are kept at {path}."
        await asyncio.to_thread(shutil.rmtree, path, True)
        return removed, f"Its files at {path} were deleted."

    def _check_purge(self, path: Path) -> None:
        data = self.config.data_dir.resolve()
        cwd = Path.cwd().resolve()
        if path in (data, cwd) or path in data.parents or path in cwd.parents:
            raise PipelineError(f"Refusing to delete {path}: it holds musher's own files.")
        if len(path.parts) < 3 or path == Path.home():
            raise PipelineError(f"Refusing to delete {path}: too close to the filesystem root.")


def _empty(path: Path) -> None:
    """Delete what is inside ``path`` (symlinks themselves, never their targets)."""
    for child in path.iterdir():
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child)
        else:
            child.unlink()


def _throttled(progress: Progress) -> OnLine:
    """Pass on git's percentage lines, at most one every :data:`PROGRESS_EVERY_S`."""
    last = time.monotonic()

    async def on_line(line: str) -> None:
        nonlocal last
        now = time.monotonic()
        if "%" in line and now - last >= PROGRESS_EVERY_S:
            last = now
            with contextlib.suppress(Exception):
                await progress(f"… {line.strip()[:120]}")

    return on_line
