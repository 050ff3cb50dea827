"""The pipeline's values: typed stages, their two board views, origins and the work item.

Every value is immutable and checks itself on construction, so an impossible state (a frozen
stage that resumes into a finished one, a supersede by item 0, an item that depends on itself)
raises :class:`~pipeline.errors.PipelineError` instead of existing. Pure code: no I/O, no
clock.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields, replace
from enum import StrEnum
from typing import Any, TypeAlias, TypeGuard, assert_never

from pipeline.errors import (
    PipelineError,
    require_count,
    require_finite,
    require_positive,
    require_string,
    require_text,
)
from pipeline.origin import AgentOrigin, Origin, SystemOrigin, UserOrigin

__all__ = ["AgentOrigin", "Origin", "SystemOrigin", "UserOrigin"]


# --- stages (P1) ---------------------------------------------------------------------------


class _Reasoned:
    """Mixin for the stages whose one field is a non-blank ``reason``."""

    __slots__ = ()
    reason: str

    def __post_init__(self) -> None:
        require_text(self.reason, f"{type(self).__name__}.reason")


@dataclass(frozen=True, slots=True)
class Backlog:
    """Waiting for a human, or for its dependencies, to start it."""


@dataclass(frozen=True, slots=True)
class Coding:
    """An agent or a human is writing the change."""


@dataclass(frozen=True, slots=True)
class Qa:
    """The change is being checked."""


@dataclass(frozen=True, slots=True)
class Merge:
    """The change is being merged onto the base branch."""


@dataclass(frozen=True, slots=True)
class Done:
    """Merged. ``merge_commit`` is the commit on the base branch, or None for a manual move."""

    merge_commit: str | None = None

    def __post_init__(self) -> None:
        if self.merge_commit is not None:
            require_text(self.merge_commit, "merge_commit", spaces=False)


@dataclass(frozen=True, slots=True)
class Archived(_Reasoned):
    """Accepted and put away; ``reason`` is ``"completed"`` when reached through ``accept``."""

    reason: str = "completed"


@dataclass(frozen=True, slots=True)
class Blocked(_Reasoned):
    """Stuck until a human unblocks it (which sends it back to Backlog)."""

    reason: str


@dataclass(frozen=True, slots=True)
class ReviewHold(_Reasoned):
    """Passed QA's machinery but held for a human review; ``release`` returns it to Qa."""

    reason: str


@dataclass(frozen=True, slots=True)
class MergeFailure:
    """The merge failed. ``kind`` is a short token without spaces (e.g. ``conflict``)."""

    kind: str
    reason: str

    def __post_init__(self) -> None:
        require_text(self.kind, "MergeFailure.kind", spaces=False)
        require_text(self.reason, "MergeFailure.reason")


@dataclass(frozen=True, slots=True)
class Frozen:
    """Paused by a human. ``resume_to`` is the exact stage it was in and returns to."""

    resume_to: Resumable

    def __post_init__(self) -> None:
        if not isinstance(self.resume_to, _RESUMABLE):
            raise PipelineError(
                f"a frozen item must resume to an open stage, not {self.resume_to!r}"
            )


@dataclass(frozen=True, slots=True)
class Abandoned(_Reasoned):
    """Given up on; ``reopen`` returns it to Backlog."""

    reason: str


@dataclass(frozen=True, slots=True)
class Superseded:
    """Replaced by item ``by`` of the same project; ``reopen`` returns it to Backlog."""

    by: int

    def __post_init__(self) -> None:
        require_positive(self.by, "Superseded.by")


@dataclass(frozen=True, slots=True)
class Rejected(_Reasoned):
    """Turned down for ``reason``; ``reopen`` returns it to Backlog."""

    reason: str


Resumable: TypeAlias = Backlog | Coding | Qa | Merge | Blocked | ReviewHold | MergeFailure
"""The open stages: those an item may be frozen in (P3's "non-terminal")."""
Finished: TypeAlias = Done | Archived | Abandoned | Superseded | Rejected
Stage: TypeAlias = Resumable | Frozen | Finished

_RESUMABLE = (Backlog, Coding, Qa, Merge, Blocked, ReviewHold, MergeFailure)
_FINISHED = (Done, Archived, Abandoned, Superseded, Rejected)

_NAMES: dict[type[Stage], str] = {
    Backlog: "backlog",
    Coding: "coding",
    Qa: "qa",
    Merge: "merge",
    Done: "done",
    Archived: "archived",
    Blocked: "blocked",
    ReviewHold: "review-hold",
    MergeFailure: "merge-failure",
    Frozen: "frozen",
    Abandoned: "abandoned",
    Superseded: "superseded",
    Rejected: "rejected",
}
_BY_NAME: dict[str, Callable[..., Stage]] = {name: cls for cls, name in _NAMES.items()}
_FIELDS: dict[str, tuple[str, ...]] = {
    name: tuple(f.name for f in fields(cls)) for cls, name in _NAMES.items()
}
STAGE_NAMES: tuple[str, ...] = tuple(_NAMES.values())


def stage_name(stage: Stage) -> str:
    """The stage's short lowercase name (``backlog`` … ``review-hold`` … ``rejected``)."""
    return _NAMES[type(stage)]


def is_finished(stage: Stage) -> bool:
    """True for Done, Archived, Abandoned, Superseded and Rejected.

    No agent works on a finished item and its timers die; only ``accept`` (Done) and
    ``reopen`` (Abandoned, Superseded, Rejected) take it anywhere.
    """
    return isinstance(stage, _FINISHED)


def is_resumable(stage: Stage) -> TypeGuard[Resumable]:
    """True for the open stages: neither finished nor Frozen. Only these can be frozen."""
    return isinstance(stage, _RESUMABLE)


# --- board views (P2) ----------------------------------------------------------------------


class Column(StrEnum):
    """Where an item shows on the board."""

    BACKLOG = "backlog"
    CODING = "coding"
    QA = "qa"
    MERGE = "merge"
    DONE = "done"
    CLOSED = "closed"
    ARCHIVED = "archived"


class Badge(StrEnum):
    """The marker an item carries in its column; ``active`` means nothing unusual."""

    ACTIVE = "active"
    FROZEN = "frozen"
    REVIEW_HOLD = "review-hold"
    BLOCKED = "blocked"
    MERGE_FAILURE = "merge-failure"
    ABANDONED = "abandoned"
    SUPERSEDED = "superseded"
    REJECTED = "rejected"
    DONE = "done"


def column(stage: Stage) -> Column:
    """The board column of ``stage``; a total function of the typed stage alone.

    A Frozen item stays visible in the column of its ``resume_to``. Blocked shows in
    ``coding``: it carries no memory of where it was, and blocking is what happens to
    work in progress (QA retries exhausted, gates failing); the ``blocked`` badge says the
    rest. ReviewHold shows in ``qa``, MergeFailure in ``merge``, and Abandoned, Superseded
    and Rejected in ``closed``.
    """
    match stage:
        case Backlog():
            return Column.BACKLOG
        case Coding() | Blocked():
            return Column.CODING
        case Qa() | ReviewHold():
            return Column.QA
        case Merge() | MergeFailure():
            return Column.MERGE
        case Done():
            return Column.DONE
        case Archived():
            return Column.ARCHIVED
        case Abandoned() | Superseded() | Rejected():
            return Column.CLOSED
        case Frozen(resume_to=inner):
            return column(inner)
        case _:
            assert_never(stage)


def badge(stage: Stage) -> Badge:
    """The badge of ``stage``, derived from the typed stage only (never from stale strings).

    Backlog, Coding, Qa, Merge and Archived are ``active`` (the column says it all); Done is
    ``done`` and can never carry a merge-failure badge; Frozen is ``frozen`` whatever it
    resumes to; every other stage has the badge of its own name.
    """
    match stage:
        case Backlog() | Coding() | Qa() | Merge() | Archived():
            return Badge.ACTIVE
        case Done():
            return Badge.DONE
        case Frozen():
            return Badge.FROZEN
        case Blocked() | ReviewHold() | MergeFailure() | Abandoned() | Superseded() | Rejected():
            return Badge(stage_name(stage))
        case _:
            assert_never(stage)


# --- stage (de)serialisation for the op log ------------------------------------------------


def stage_to_dict(stage: Stage) -> dict[str, Any]:
    """The canonical JSON-ready form of ``stage``.

    Guarantees: ``{"stage": <stage_name>}`` plus exactly the stage's fields (``merge_commit``
    always present for Done, even when None; Frozen nests its ``resume_to``), so equal stages
    give equal dicts and ``stage_from_dict(stage_to_dict(s)) == s``.
    """
    out: dict[str, Any] = {"stage": stage_name(stage)}
    if isinstance(stage, Frozen):
        out["resume_to"] = stage_to_dict(stage.resume_to)
    else:
        for key in _FIELDS[out["stage"]]:
            out[key] = getattr(stage, key)
    return out


def stage_from_dict(data: Mapping[str, Any]) -> Stage:
    """Rebuild a stage from :func:`stage_to_dict`'s output.

    Raises:
        PipelineError: unknown stage name, missing or extra keys, or field values the
            stage rejects. Nothing is coerced: ``{"stage": "superseded", "by": "3"}`` fails.
    """
    if type(data) is dict and len(data) == 1 and type(data.get("stage")) is str:
        bare = _BARE.get(data["stage"])  # most stages have no fields: one instance per name
        if bare is not None:
            return bare
    if not isinstance(data, Mapping):
        raise PipelineError(f"a stage must be an object, got {data!r}")
    name = data.get("stage")
    if not isinstance(name, str) or name not in _FIELDS:
        raise PipelineError(f"unknown stage {name!r}")
    expected = {"stage", *_FIELDS[name]}
    if set(data) != expected:
        raise PipelineError(f"stage {name!r} takes keys {sorted(expected)}, got {sorted(data)}")
    if name == "frozen":
        inner = stage_from_dict(data["resume_to"])
        if not isinstance(inner, _RESUMABLE):
            raise PipelineError(f"a frozen item cannot resume to {stage_name(inner)}")
        return Frozen(resume_to=inner)
    return _BY_NAME[name](**{key: data[key] for key in _FIELDS[name]})


_BARE: dict[str, Stage] = {name: cls() for name, cls in _BY_NAME.items() if not _FIELDS[name]}
"""The stages without fields, one (frozen) instance of each, by name."""


_ALL_STAGES = (*_RESUMABLE, *_FINISHED, Frozen)


# --- the work item -------------------------------------------------------------------------


class ItemKind(StrEnum):
    """What sort of work an item is."""

    STORY = "story"
    BUG = "bug"
    SPIKE = "spike"
    REFACTOR = "refactor"
    EPIC = "epic"


@dataclass(frozen=True, slots=True, kw_only=True)
class Item:
    """One work item of a project. Construct with keywords; change only via transitions.

    Guarantees: ``number`` ≥ 1; ``title`` is one non-blank line; ``depends_on`` holds
    distinct positive numbers other than ``number``; ``epic`` is None or another item's
    number; ``retries`` ≥ 0; ``stage`` is a valid Stage and ``origin`` an Origin.
    """

    number: int
    kind: ItemKind
    title: str
    body: str = ""
    stage: Stage = Backlog()
    depends_on: tuple[int, ...] = ()
    epic: int | None = None
    retries: int = 0
    origin: Origin
    created_at: float
    updated_at: float

    def __post_init__(self) -> None:
        n = require_positive(self.number, "item number")
        if not isinstance(self.kind, ItemKind):
            raise PipelineError(f"item kind must be an ItemKind, got {self.kind!r}")
        require_text(self.title, "item title", one_line=True)
        require_string(self.body, "item body")
        if type(self.stage) not in _NAMES and not isinstance(self.stage, _ALL_STAGES):
            raise PipelineError(f"not a stage: {self.stage!r}")
        if not isinstance(self.depends_on, tuple):
            raise PipelineError(f"depends_on must be a tuple, got {self.depends_on!r}")
        for dep in self.depends_on:
            if require_positive(dep, "dependency") == n:
                raise PipelineError(f"#{n} cannot depend on itself")
        if len(set(self.depends_on)) != len(self.depends_on):
            raise PipelineError(f"#{n} names a dependency twice: {self.depends_on}")
        if self.epic is not None and require_positive(self.epic, "epic") == n:
            raise PipelineError(f"#{n} cannot be its own epic")
        require_count(self.retries, "retries")
        if not isinstance(self.origin, Origin):
            raise PipelineError(f"origin must be an Origin, got {self.origin!r}")
        require_finite(self.created_at, "created_at")
        require_finite(self.updated_at, "updated_at")

    def changed(self, **changes: Any) -> Item:
        """This item with ``changes`` (field values), checked as a new item is.

        A move (only ``stage`` and ``updated_at`` change, as most updates in a log do) checks
        just those two: every other field is this item's, checked when it was made.

        Raises:
            PipelineError: a changed value the item refuses.
        """
        if not changes.keys() <= _MOVE_FIELDS:
            return replace(self, **changes)
        stage = changes.get("stage", self.stage)
        if type(stage) not in _NAMES:
            raise PipelineError(f"not a stage: {stage!r}")
        at = require_finite(changes.get("updated_at", self.updated_at), "updated_at")
        moved = object.__new__(Item)
        for name in _ITEM_FIELDS:
            object.__setattr__(moved, name, getattr(self, name))
        object.__setattr__(moved, "stage", stage)
        object.__setattr__(moved, "updated_at", at)
        return moved

    @property
    def label(self) -> str:
        """``#12 Login page``: how notifications and replies name the item."""
        return f"#{self.number} {self.title}"


_ITEM_FIELDS = tuple(f.name for f in fields(Item))
_MOVE_FIELDS = frozenset({"stage", "updated_at"})
