"""The project registry (N1, N3): projects are ops, seeded from ``[projects]`` at startup.

:class:`Projects` adds, changes and removes projects through the engine's store, one op
each (``project.add``, ``project.set``, ``project.remove``); the ``projects`` table it
reads is materialised from them (S3). ``.musher/project.toml`` follows ``project set`` so
the file in the repository says what the registry says.

The default project, for rooms that never ran ``switch``: ``[projects] default`` when set
(registered at the current directory if no entry names it), else the oldest registered
project, and on a new store the current directory's. Starting the daemon from another
directory therefore never moves a room to another project.
"""

from __future__ import annotations

import asyncio
import logging
import shlex
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from config.models import ProjectEntry, ProjectsConfig
from pipeline.engine import Engine, ProjectNotFound, project_slug
from pipeline.errors import PipelineError
from pipeline.gitops import check_branch, check_url
from pipeline.model import Column, Origin, SystemOrigin, column
from pipeline.project_file import ProjectFile, read_project_file, write_project_file
from pipeline.project_ops import QA_MODES, AddProject, RemoveProject, SetProject
from pipeline.stacks import detect_stack, gates_for
from pipeline.store import ProjectRecord

log = logging.getLogger("musher.projects")
FILE_KEYS = ("stack", "base_branch", "timezone", "qa", "gates")
SETTABLE = ("timezone", "base_branch", "qa", "gates", "remote")
"""The keys ``project set`` takes."""
STARTUP = SystemOrigin("daemon", "startup")


class ProjectExists(PipelineError):
    """A project of that name is registered; nothing changed."""


def parse_timezone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise PipelineError(f"Unknown time zone {value[:64]!r}: use an IANA name such as "
                            "Europe/Paris or UTC.") from None  # fmt: skip
    return value


def parse_qa(value: str) -> str:
    if value.lower() not in QA_MODES:
        raise PipelineError(f"qa must be one of {', '.join(QA_MODES)}.")
    return value.lower()


def parse_gates(value: str) -> tuple[tuple[str, ...], ...]:
    """``pytest -q; ruff check .`` → two argv lists; ``none`` → no gates."""
    if value.strip().lower() == "none":
        return ()
    try:
        gates = tuple(tuple(shlex.split(part)) for part in value.split(";") if part.strip())
    except ValueError as err:
        raise PipelineError(f"Cannot read the gates: {err}.") from None
    if not gates:
        raise PipelineError("Give gates like `pytest -q; ruff check .`, or none.")
    return gates


def parse_setting(key: str, value: str) -> Any:
    """A ``project set`` value as the registry stores it, checked.

    Raises:
        PipelineError: unknown key or bad value; the message says what is accepted.
    """
    match key:
        case "timezone":
            return parse_timezone(value)
        case "base_branch":
            return check_branch(value)
        case "qa":
            return parse_qa(value)
        case "gates":
            return parse_gates(value)
        case "remote":
            return None if value.lower() == "none" else check_url(value)
    raise PipelineError(f"Unknown setting {key[:40]!r}. Settable: {', '.join(SETTABLE)}.")


@dataclass(frozen=True, slots=True)
class Removed:
    """A removed project: its last record, what the op cleared, and the rooms that were on
    it (they now work on the default project)."""

    record: ProjectRecord
    cleared: tuple[str, ...]
    rooms: tuple[str, ...]


def settings_of(record: ProjectRecord) -> dict[str, Any]:
    return {"stack": record.stack, "base_branch": record.base_branch,
            "timezone": record.timezone, "qa": record.qa, "gates": record.gates}  # fmt: skip


class Projects:
    """Registry operations over ``engine``; each writes one op, after every check passed."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._lock = asyncio.Lock()  # registry changes are rare: one at a time

    async def find(self, name: str) -> ProjectRecord | None:
        try:
            return await self.engine.project(name)
        except ProjectNotFound:
            return None

    async def add(self, change: AddProject, origin: Origin) -> ProjectRecord:
        """Register ``change.name``.

        Raises:
            ProjectExists: the name is taken; nothing was written.
        """
        async with self._lock:
            if await self.find(change.name) is not None:
                raise ProjectExists(f"A project called {change.name} already exists.")
            await self.engine.store.append(change, origin)
            return await self.engine.project(change.name)

    async def set(self, name: str, key: str, value: str, origin: Origin) -> ProjectRecord:
        """``project set``: check ``value`` for ``key``, write one ``project.set`` op, then
        rewrite the project's ``.musher/project.toml`` when its directory exists.

        Raises:
            ProjectNotFound, PipelineError: nothing was written.
        """
        parsed = parse_setting(key, value)
        async with self._lock:
            await self.engine.project(name)
            await self.engine.store.append(SetProject(name, **{key: parsed}), origin)
            record = await self.engine.project(name)
        if key != "remote":
            await asyncio.to_thread(_follow_file, Path(record.path), record)
        return record

    async def remove(self, name: str, origin: Origin) -> Removed:
        """Unregister ``name`` (one ``project.remove`` op); its files are not touched.

        Raises:
            ProjectNotFound: nothing was written.
            PipelineError: ``name`` is the default project.
        """
        async with self._lock:
            record = await self.engine.project(name)
            if name == self.engine.default_project:
                raise PipelineError(
                    f"{name} is the default project; make another one the default"
                    " ([projects] default) before deleting it."
                )
            rooms = tuple(r.session for r in await self.engine.store.rooms() if r.project == name)
            applied = await self.engine.store.append(RemoveProject(name), origin)
        return Removed(record, tuple(applied.effects), rooms)

    async def column_counts(self) -> dict[str, dict[Column, int]]:
        """Per project, how many live items each board column holds."""
        out: dict[str, dict[Column, int]] = {}
        for record in await self.engine.projects():
            counts = out.setdefault(record.name, {})
            for item in await self.engine.items(record.name):
                counts[column(item.stage)] = counts.get(column(item.stage), 0) + 1
        return out

    async def follow_files(self, default_zone: str) -> int:
        """At startup: one ``project.set`` per project whose ``.musher/project.toml`` says
        otherwise than the registry, and for the default project ``default_zone``
        (``[projects] timezone``) unless its file names a zone. Returns how many changed.
        """
        changed = 0
        for record in await self.engine.projects():
            zone = default_zone if record.name == self.engine.default_project else None
            try:
                change = await asyncio.to_thread(file_changes, record, zone)
            except PipelineError as err:
                log.warning("%s; the registry's settings for %s stay", err, record.name)
                continue
            if change is not None:
                log.info("project %s follows its settings: %s", record.name, change.settings())
                await self.engine.store.append(change, STARTUP)
                changed += 1
        return changed

    async def seed(self, config: ProjectsConfig, cwd: Path) -> str:
        """Register what ``[projects]`` names and is missing; set and return the default.

        Idempotent: a registered project is never changed or moved, so a restart (from
        any directory) keeps the registry and each room's project.
        """
        cwd = real_path(cwd)
        if not config.default and not await self.engine.projects():
            await self._seed_one(project_slug(cwd.name), cwd, config)
        for entry in config.entry:
            if await self.find(entry.name) is None:
                await self._seed_one(entry.name, entry_path(config, entry), config, entry)
        if config.default and await self.find(config.default) is None:
            await self._seed_one(config.default, cwd, config)
        default = config.default or oldest(await self.engine.projects())
        self.engine.default_project = default
        return default

    async def _seed_one(
        self, name: str, path: Path, config: ProjectsConfig, entry: ProjectEntry | None = None
    ) -> None:
        detected = detect_stack(path).stack
        known: dict[str, Any] = {"stack": detected.name, "timezone": config.timezone,
                 "gates": gates_for(detected, path)}  # fmt: skip
        try:  # a project that carries its own settings keeps them
            own = read_project_file(path) or {}
        except PipelineError as err:
            log.warning("%s; using the defaults for %s", err, name)
            own = {}
        known |= {k: v for k, v in own.items() if k in FILE_KEYS}
        remote = entry.remote if entry else None
        try:
            change = AddProject(name, str(path), sandbox=config.sandbox, remote=remote, **known)
        except PipelineError as err:
            log.warning("%s/.musher/project.toml: %s; using the defaults", path, err)
            change = AddProject(name, str(path), sandbox=config.sandbox, remote=remote)
        await self.add(change, STARTUP)


def file_changes(record: ProjectRecord, zone: str | None = None) -> SetProject | None:
    """The ``project.set`` that brings ``record`` in step with its ``.musher/project.toml``
    (and, when that file names no ``timezone``, with ``zone``), or None when they agree or
    nothing valid would change. An unknown time zone or an invalid setting in the file is
    logged and left out; the registry's value stays.

    Raises:
        ProjectFileError: the file is not valid TOML.
    """
    own = read_project_file(Path(record.path)) or {}
    wanted = {k: v for k, v in own.items() if k in FILE_KEYS}
    if "gates" in wanted and isinstance(wanted["gates"], list):
        wanted["gates"] = tuple(tuple(g) if isinstance(g, list) else g for g in wanted["gates"])
    if "timezone" not in wanted and zone is not None:
        wanted["timezone"] = zone
    if "timezone" in wanted:
        try:
            parse_timezone(str(wanted["timezone"]))
        except PipelineError as err:
            log.warning("%s/.musher/project.toml: %s; ignored", record.path, err)
            del wanted["timezone"]
    current = settings_of(record)
    differ = {k: v for k, v in wanted.items() if v != current[k]}
    if not differ:
        return None
    try:
        return SetProject(record.name, **differ)
    except PipelineError as err:
        log.warning("%s/.musher/project.toml: %s; the registry's settings stay", record.path, err)
        return None


def real_path(path: str | Path) -> Path:
    """``path`` made absolute with symlinks resolved (a sync helper for async callers)."""
    return Path(path).resolve()


def _follow_file(path: Path, record: ProjectRecord) -> None:
    """Rewrite the project's ``.musher/project.toml`` from ``record``, if it has one."""
    if (path / ".musher").is_dir():
        write_project_file(path, ProjectFile.of(settings_of(record)))


def entry_path(config: ProjectsConfig, entry: ProjectEntry) -> Path:
    """Where a ``[[projects.entry]]`` lives: its ``path`` (relative to ``root``), else
    ``root/<name>``; resolved to an absolute path."""
    path = entry.path if entry.path is not None else Path(entry.name)
    return (config.root / path).resolve()


def oldest(records: Iterable[ProjectRecord]) -> str:
    """The name of the first project registered (ties by name)."""
    first = min(records, key=lambda r: (r.created_at, r.name), default=None)
    if first is None:
        raise ProjectNotFound("No project is set up yet.")
    return first.name


__all__ = ["SETTABLE", "ProjectExists", "Projects", "Removed"]
