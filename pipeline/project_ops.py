"""The project registry's ops (N3): ``project.add``, ``project.set``, ``project.remove``.

Like every change (:mod:`pipeline.ops`), each checks its fields on construction and
rebuilds itself from its payload just as strictly. ``project.create`` is the older form of
``project.add`` (name, path, base branch and time zone only); logs that hold it still
replay, with the other fields at their defaults.

    kind            columns (project, item)  payload keys
    project.create  name, null               name, path, base_branch, timezone
    project.add     name, null               those, stack, sandbox, remote, qa, gates
    project.set     name, null               one or more of base_branch, timezone, stack,
                                             sandbox, remote, qa, gates
    project.remove  name, null               {} (its items and timers go; numbers stay used)
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Self

from pipeline.errors import PipelineError, require_text
from pipeline.op_fields import KEEP, Keep, keys, no_item, project_name
from pipeline.stacks import STACK_NAMES, Gates

QA_MODES = ("human", "server", "agent")
SANDBOXES = ("none", "bwrap", "docker", "podman")
MAX_GATES = 20


def _branch(value: object) -> str:
    branch = require_text(value, "base branch", spaces=False, limit=255)
    if branch.startswith("-"):
        raise PipelineError(f"base branch must not start with '-', got {branch!r}")
    return branch


def _timezone(value: object) -> str:
    return require_text(value, "timezone", spaces=False, limit=64)


def _one_of(choices: tuple[str, ...], what: str) -> Callable[[object], str]:
    def check(value: object) -> str:
        if value not in choices:
            raise PipelineError(f"{what} must be one of {', '.join(choices)}, got {value!r}")
        return str(value)

    return check


def _remote(value: object) -> str | None:
    return None if value is None else require_text(value, "remote", spaces=False, limit=2048)


def _gates(value: object) -> Gates:
    """Gates as a tuple of argv tuples: each a non-empty list of non-empty strings."""
    if not isinstance(value, list | tuple) or len(value) > MAX_GATES:
        raise PipelineError(f"gates must be a list of at most {MAX_GATES} argv lists")
    out = []
    for argv in value:
        if not isinstance(argv, list | tuple) or not argv:
            raise PipelineError(f"a gate must be a non-empty argv list, got {argv!r}")
        out.append(tuple(require_text(arg, "gate argument", limit=1024) for arg in argv))
    return tuple(out)


_CHECKS: dict[str, Callable[[Any], Any]] = {
    "base_branch": _branch,
    "timezone": _timezone,
    "stack": _one_of(STACK_NAMES, "stack"),
    "sandbox": _one_of(SANDBOXES, "sandbox"),
    "remote": _remote,
    "qa": _one_of(QA_MODES, "qa"),
    "gates": _gates,
}
"""Each project setting and its check; ``project.set`` may change any of them."""


def _payload_of(values: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(values)
    if "gates" in out:
        out["gates"] = [list(argv) for argv in out["gates"]]
    return out


@dataclass(frozen=True, slots=True)
class CreateProject:
    """Register a project (the older op; see :class:`AddProject`). Refused when taken."""

    KIND: ClassVar[str] = "project.create"
    name: str
    path: str
    base_branch: str
    timezone: str

    def __post_init__(self) -> None:
        project_name(self.name)
        require_text(self.path, "project path", limit=4096)
        _branch(self.base_branch)
        _timezone(self.timezone)

    def columns(self) -> tuple[str | None, int | None]:
        return self.name, None

    def to_payload(self) -> dict[str, Any]:
        return {"name": self.name, "path": self.path, "base_branch": self.base_branch,
                "timezone": self.timezone}  # fmt: skip

    def settings(self) -> dict[str, Any]:
        """The row's settings besides name and path (defaults for the rest)."""
        return {"base_branch": self.base_branch, "timezone": self.timezone}

    @classmethod
    def from_payload(cls, project: str | None, item: int | None, p: Mapping[str, Any]) -> Self:
        keys(p, {"name", "path", "base_branch", "timezone"})
        no_item(item, cls.KIND)
        if project != p["name"]:
            raise PipelineError(f"project column {project!r} differs from the name {p['name']!r}")
        return cls(p["name"], p["path"], p["base_branch"], p["timezone"])


@dataclass(frozen=True, slots=True)
class AddProject:
    """Register a project with all its settings (N3). Refused when the name is taken."""

    KIND: ClassVar[str] = "project.add"
    name: str
    path: str
    base_branch: str = "main"
    timezone: str = "UTC"
    stack: str = "generic"
    sandbox: str = "none"
    remote: str | None = None
    qa: str = "human"
    gates: Gates = ()

    def __post_init__(self) -> None:
        project_name(self.name)
        require_text(self.path, "project path", limit=4096)
        for name, check in _CHECKS.items():
            object.__setattr__(self, name, check(getattr(self, name)))

    def columns(self) -> tuple[str | None, int | None]:
        return self.name, None

    def settings(self) -> dict[str, Any]:
        """Every setting of :data:`_CHECKS` (gates as argv tuples)."""
        return {name: getattr(self, name) for name in _CHECKS}

    def to_payload(self) -> dict[str, Any]:
        return _payload_of({"name": self.name, "path": self.path, **self.settings()})

    @classmethod
    def from_payload(cls, project: str | None, item: int | None, p: Mapping[str, Any]) -> Self:
        keys(p, {"name", "path", *_CHECKS})
        no_item(item, cls.KIND)
        if project != p["name"]:
            raise PipelineError(f"project column {project!r} differs from the name {p['name']!r}")
        return cls(**dict(p))


@dataclass(frozen=True, slots=True)
class SetProject:
    """Change some settings of a registered project; ``KEEP`` leaves one alone."""

    KIND: ClassVar[str] = "project.set"
    name: str
    base_branch: str | Keep = KEEP
    timezone: str | Keep = KEEP
    stack: str | Keep = KEEP
    sandbox: str | Keep = KEEP
    remote: str | Keep | None = KEEP
    qa: str | Keep = KEEP
    gates: Gates | Keep = KEEP
    _changed: dict[str, Any] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        project_name(self.name)
        changed = {
            name: check(getattr(self, name))
            for name, check in _CHECKS.items()
            if getattr(self, name) is not KEEP
        }
        if not changed:
            raise PipelineError(f"project.set of {self.name} must change something")
        object.__setattr__(self, "_changed", changed)

    def columns(self) -> tuple[str | None, int | None]:
        return self.name, None

    def settings(self) -> dict[str, Any]:
        """The changed settings (gates as argv tuples)."""
        return dict(self._changed)

    def to_payload(self) -> dict[str, Any]:
        return _payload_of(self._changed)

    @classmethod
    def from_payload(cls, project: str | None, item: int | None, p: Mapping[str, Any]) -> Self:
        keys(p, set(), frozenset(_CHECKS))
        no_item(item, cls.KIND)
        return cls(project_name(project), **dict(p))


@dataclass(frozen=True, slots=True)
class RemoveProject:
    """Unregister a project: its row, items and timers go, rooms on it fall back to the
    default; its item numbers stay used (P5), so a re-created project never reuses one."""

    KIND: ClassVar[str] = "project.remove"
    name: str

    def __post_init__(self) -> None:
        project_name(self.name)

    def columns(self) -> tuple[str | None, int | None]:
        return self.name, None

    def to_payload(self) -> dict[str, Any]:
        return {}

    @classmethod
    def from_payload(cls, project: str | None, item: int | None, p: Mapping[str, Any]) -> Self:
        keys(p, set())
        no_item(item, cls.KIND)
        return cls(project_name(project))
