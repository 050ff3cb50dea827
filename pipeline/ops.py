"""The op log's vocabulary: one frozen change per op kind.

A *change* says what should happen (``item.create``, ``timer.add``, …) and checks its own
fields on construction, so a malformed change fails before anything is written. Each has
``KIND``; ``columns()``, the op's (project, item) columns; ``to_payload()``, its JSON
payload; and ``from_payload(project, item, payload)``, which rebuilds it from the stored
form just as strictly. :class:`pipeline.envelope.SignedOp` carries a change into the log.

    kind            columns (project, item)      payload keys
    project.*       see pipeline.project_ops (the project registry: add, set, remove)
    item.create     project, number              every Item field (stage as stage_to_dict)
    item.update     project, number              some of stage, title, body, depends_on,
                                                 epic, retries (at least one)
    item.purge      project, number              {} (tombstone)
    timer.add       project, item or null        id, fire_at, action
    timer.cancel    project or null, null        id
    room.set        project or null, null        session and at least one of project, ambient,
                                                 tools (the tool uses the room allows, L7)
    agent.*         see pipeline.agent_ops (an item's agent: claim, progress, end, clear)
    node.*          see pipeline.node_ops (trusted keys: trust, revoke)
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Self, TypeAlias

from pipeline.agent_ops import AgentProgress, ClaimAgent, ClearAgent, EndAgent
from pipeline.canonical import canonical_json
from pipeline.errors import (
    PipelineError,
    require_count,
    require_finite,
    require_positive,
    require_string,
    require_text,
)
from pipeline.model import (
    Item,
    ItemKind,
    Origin,
    Stage,
    stage_from_dict,
    stage_name,
    stage_to_dict,
)
from pipeline.node_ops import RevokeNode, TrustNode
from pipeline.op_fields import KEEP, PROJECT_NAME, Keep
from pipeline.op_fields import keys as _keys
from pipeline.op_fields import no_item as _no_item
from pipeline.op_fields import project_name as _project
from pipeline.project_ops import AddProject, CreateProject, RemoveProject, SetProject

__all__ = [
    "CHANGES", "KEEP", "PROJECT_NAME", "AddProject", "AddTimer", "CancelTimer", "Change",
    "CreateItem", "CreateProject", "Keep", "PurgeItem", "RemoveProject", "SetProject", "SetRoom",
    "UpdateItem",
]  # fmt: skip


_ITEM_KEYS = {"number", "kind", "title", "body", "stage", "depends_on", "epic", "retries",
              "origin", "created_at", "updated_at"}  # fmt: skip


@dataclass(frozen=True, slots=True)
class CreateItem:
    """Add ``item`` to ``project``. Refused when its number was ever used there (P5)."""

    KIND: ClassVar[str] = "item.create"
    project: str
    item: Item

    def __post_init__(self) -> None:
        _project(self.project)
        if not isinstance(self.item, Item):
            raise PipelineError(f"item.create needs an Item, got {self.item!r}")

    def columns(self) -> tuple[str | None, int | None]:
        return self.project, self.item.number

    def to_payload(self) -> dict[str, Any]:
        item = self.item
        return {"number": item.number, "kind": item.kind.value, "title": item.title,
                "body": item.body, "stage": stage_to_dict(item.stage),
                "depends_on": list(item.depends_on), "epic": item.epic, "retries": item.retries,
                "origin": item.origin.to_dict(), "created_at": float(item.created_at),
                "updated_at": float(item.updated_at)}  # fmt: skip

    @classmethod
    def from_payload(cls, project: str | None, item: int | None, p: Mapping[str, Any]) -> Self:
        _keys(p, _ITEM_KEYS)
        if item != p["number"]:
            raise PipelineError(f"item column {item!r} differs from the number {p['number']!r}")
        if not isinstance(p["depends_on"], list):
            raise PipelineError("depends_on must be a list")
        try:
            kind = ItemKind(p["kind"])
        except ValueError:
            raise PipelineError(f"unknown item kind {p['kind']!r}") from None
        new = Item(
            number=p["number"], kind=kind, title=p["title"], body=p["body"],
            stage=stage_from_dict(p["stage"]), depends_on=tuple(p["depends_on"]),
            epic=p["epic"], retries=p["retries"], origin=Origin.from_dict(p["origin"]),
            created_at=p["created_at"], updated_at=p["updated_at"],
        )  # fmt: skip
        return cls(_project(project), new)


def _depends(value: object) -> tuple[int, ...]:
    if not isinstance(value, tuple | list):
        raise PipelineError(f"depends_on must be a list of item numbers, got {value!r}")
    deps = tuple(require_positive(dep, "dependency") for dep in value)
    if len(set(deps)) != len(deps):
        raise PipelineError(f"depends_on names a dependency twice: {deps}")
    return deps


def _stage_json(value: object) -> dict[str, Any]:
    try:
        stage_name(value)  # type: ignore[arg-type]
    except KeyError:
        raise PipelineError(f"not a stage: {value!r}") from None
    return dict(_stage_dict(value))


@functools.lru_cache(maxsize=256)
def _stage_dict(stage: Stage) -> dict[str, Any]:
    """:func:`stage_to_dict`, once per distinct stage (a handful repeat across a log)."""
    return stage_to_dict(stage)


_UPDATE_CHECKS: dict[str, Callable[[Any], Any]] = {
    "stage": _stage_json,
    "title": lambda value: require_text(value, "item title", one_line=True),
    "body": lambda value: require_string(value, "item body"),
    "depends_on": lambda value: list(_depends(value)),
    "epic": lambda value: None if value is None else require_positive(value, "epic"),
    "retries": lambda value: require_count(value, "retries"),
}
"""Each updatable field and the check that turns its value into payload JSON."""


@dataclass(frozen=True, slots=True)
class UpdateItem:
    """Change some fields of an existing item; ``KEEP`` leaves a field alone.

    Transition legality (P3) is the engine's business: the store applies any valid value.
    An update that makes the item finished also deletes its timers (T1).
    """

    KIND: ClassVar[str] = "item.update"
    project: str
    number: int
    stage: Stage | Keep = KEEP
    title: str | Keep = KEEP
    body: str | Keep = KEEP
    depends_on: tuple[int, ...] | Keep = KEEP
    epic: int | Keep | None = KEEP
    retries: int | Keep = KEEP
    _payload: dict[str, Any] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        _project(self.project)
        require_positive(self.number, "item number")
        changed = {
            name: check(getattr(self, name))
            for name, check in _UPDATE_CHECKS.items()
            if getattr(self, name) is not KEEP
        }
        if not changed:
            raise PipelineError(f"an update of #{self.number} must change something")
        object.__setattr__(self, "_payload", changed)

    def of_item(self, project: object, number: object) -> UpdateItem:
        """The same change of another item (a log repeats stage moves word for word): its
        fields were checked when this one was made, so only ``project`` and ``number`` are.

        Raises:
            PipelineError: a bad project name or item number.
        """
        other = object.__new__(UpdateItem)
        for name in _UPDATE_FIELDS:
            object.__setattr__(other, name, getattr(self, name))
        object.__setattr__(other, "project", _project(project))
        object.__setattr__(other, "number", require_positive(number, "item number"))
        return other

    def changes(self) -> dict[str, Any]:
        """The changed fields as :class:`Item` values (``depends_on`` as a tuple)."""
        out = {name: getattr(self, name) for name in self._payload}
        if "depends_on" in out:
            out["depends_on"] = tuple(out["depends_on"])
        return out

    def columns(self) -> tuple[str | None, int | None]:
        return self.project, self.number

    def to_payload(self) -> dict[str, Any]:
        return dict(self._payload)

    @classmethod
    def from_payload(cls, project: str | None, item: int | None, p: Mapping[str, Any]) -> Self:
        _keys(p, set(), frozenset(_UPDATE_CHECKS))
        values = dict(p)
        if "stage" in values:
            values["stage"] = stage_from_dict(values["stage"])
        if "depends_on" in values:
            values["depends_on"] = tuple(_depends(values["depends_on"]))
        return cls(_project(project), require_positive(item, "item number"), **values)


_UPDATE_FIELDS = (*_UPDATE_CHECKS, "_payload")


@dataclass(frozen=True, slots=True)
class PurgeItem:
    """Tombstone: remove the item row and its timers; its number stays used (P5, S5).

    Idempotent: purging a purged item changes nothing (the op is still recorded).
    Refused for a number the project never issued.
    """

    KIND: ClassVar[str] = "item.purge"
    project: str
    number: int

    def __post_init__(self) -> None:
        _project(self.project)
        require_positive(self.number, "item number")

    def columns(self) -> tuple[str | None, int | None]:
        return self.project, self.number

    def to_payload(self) -> dict[str, Any]:
        return {}

    @classmethod
    def from_payload(cls, project: str | None, item: int | None, p: Mapping[str, Any]) -> Self:
        _keys(p, set())
        return cls(_project(project), require_positive(item, "item number"))


@dataclass(frozen=True, slots=True)
class AddTimer:
    """A timer row (T1): fire ``action`` (opaque JSON object) at unix time ``fire_at``.

    Refused when the id is taken, or the item is missing or finished.
    """

    KIND: ClassVar[str] = "timer.add"
    id: str
    project: str
    item: int | None
    fire_at: float
    action: Mapping[str, Any]

    def __post_init__(self) -> None:
        require_text(self.id, "timer id", spaces=False, limit=200)
        _project(self.project)
        if self.item is not None:
            require_positive(self.item, "timer item")
        require_finite(self.fire_at, "fire_at")
        if not isinstance(self.action, Mapping):
            raise PipelineError(f"a timer action must be a JSON object, got {self.action!r}")
        canonical_json(dict(self.action))

    def columns(self) -> tuple[str | None, int | None]:
        return self.project, self.item

    def to_payload(self) -> dict[str, Any]:
        return {"id": self.id, "fire_at": float(self.fire_at), "action": dict(self.action)}

    @classmethod
    def from_payload(cls, project: str | None, item: int | None, p: Mapping[str, Any]) -> Self:
        _keys(p, {"id", "fire_at", "action"})
        return cls(p["id"], _project(project), item, p["fire_at"], p["action"])


@dataclass(frozen=True, slots=True)
class CancelTimer:
    """Delete a timer row. Idempotent: cancelling a gone timer changes nothing."""

    KIND: ClassVar[str] = "timer.cancel"
    id: str
    project: str | None = None

    def __post_init__(self) -> None:
        require_text(self.id, "timer id", spaces=False, limit=200)
        if self.project is not None:
            _project(self.project)

    def columns(self) -> tuple[str | None, int | None]:
        return self.project, None

    def to_payload(self) -> dict[str, Any]:
        return {"id": self.id}

    @classmethod
    def from_payload(cls, project: str | None, item: int | None, p: Mapping[str, Any]) -> Self:
        _keys(p, {"id"})
        _no_item(item, cls.KIND)
        return cls(p["id"], project)


@dataclass(frozen=True, slots=True)
class SetRoom:
    """Set a session's active project (None clears it), its ambient flag and/or the tool
    uses it allows without asking (``tools``: rules such as ``Bash(git *)``; the whole list)."""

    KIND: ClassVar[str] = "room.set"
    session: str
    project: str | Keep | None = KEEP
    ambient: bool | Keep = KEEP
    tools: tuple[str, ...] | Keep = KEEP

    def __post_init__(self) -> None:
        require_text(self.session, "session", limit=512)
        if self.project is not KEEP and self.project is not None:
            _project(self.project)
        if self.ambient is not KEEP and not isinstance(self.ambient, bool):
            raise PipelineError(f"ambient must be true or false, got {self.ambient!r}")
        if self.tools is not KEEP:
            if not isinstance(self.tools, list | tuple) or len(self.tools) > 200:
                raise PipelineError(f"tools must be a list of rules, got {self.tools!r}")
            object.__setattr__(self, "tools", tuple(self.tools))
            for rule in self.tools:
                require_text(rule, "tool rule", limit=512)
        if self.project is KEEP and self.ambient is KEEP and self.tools is KEEP:
            raise PipelineError("room.set must change the project, ambient or tools")

    def columns(self) -> tuple[str | None, int | None]:
        return (self.project if isinstance(self.project, str) else None), None

    def to_payload(self) -> dict[str, Any]:
        out: dict[str, Any] = {"session": self.session}
        if self.project is not KEEP:
            out["project"] = self.project
        if self.ambient is not KEEP:
            out["ambient"] = self.ambient
        if self.tools is not KEEP:
            out["tools"] = list(self.tools)
        return out

    @classmethod
    def from_payload(cls, project: str | None, item: int | None, p: Mapping[str, Any]) -> Self:
        _keys(p, {"session"}, frozenset({"project", "ambient", "tools"}))
        _no_item(item, cls.KIND)
        change = cls(
            p["session"], p.get("project", KEEP), p.get("ambient", KEEP), p.get("tools", KEEP)
        )
        if change.columns()[0] != project:
            raise PipelineError(f"project column {project!r} differs from the payload")
        return change


Change: TypeAlias = (
    CreateProject | AddProject | SetProject | RemoveProject | CreateItem | UpdateItem
    | PurgeItem | AddTimer | CancelTimer | SetRoom | ClaimAgent | AgentProgress | EndAgent
    | ClearAgent | TrustNode | RevokeNode
)  # fmt: skip
CHANGES: dict[str, type[Change]] = {
    cls.KIND: cls
    for cls in (CreateProject, AddProject, SetProject, RemoveProject, CreateItem, UpdateItem,
                PurgeItem, AddTimer, CancelTimer, SetRoom, ClaimAgent, AgentProgress, EndAgent,
                ClearAgent, TrustNode, RevokeNode)
}  # fmt: skip
