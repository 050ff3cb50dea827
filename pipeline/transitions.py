"""The pipeline's state machine: events, and the one pure function that applies them (P3).

``transition(item, event, now)`` returns a new item or raises :class:`TransitionError`;
it never does I/O and never half-applies. The whole table:

    | event                      | from                            | to                          |
    |----------------------------|---------------------------------|-----------------------------|
    | start / move coding        | Backlog                         | Coding                      |
    | move backlog               | Coding, Qa, Merge, MergeFailure | Backlog                     |
    | submit / move qa           | Coding                          | Qa                          |
    | qa_pass / move merge       | Qa, Coding                      | Merge                       |
    | qa_fail                    | Qa                              | Coding, retries+1; Blocked  |
    |                            |                                 | when retries > max_retries  |
    | merged / move done         | Merge, Qa, Coding               | Done                        |
    | merge_failed               | Merge                           | MergeFailure                |
    | retry_merge                | MergeFailure                    | Merge                       |
    | accept / move archived     | Done                            | Archived(completed)         |
    | block                      | Backlog, Coding, Qa, Merge,     | Blocked                     |
    |                            | MergeFailure                    |                             |
    | unblock                    | Blocked                         | Backlog                     |
    | hold / release             | Qa / ReviewHold                 | ReviewHold / Qa             |
    | freeze / unfreeze          | any non-terminal / Frozen       | Frozen(resume_to=exact      |
    |                            |                                 | stage) / resume_to          |
    | abandon, supersede, reject | any non-terminal                | Abandoned, Superseded,      |
    |                            |                                 | Rejected                    |
    | reopen                     | Abandoned, Superseded, Rejected | Backlog                     |

Finished stages (Done, Archived, Abandoned, Superseded, Rejected) leave only through
``accept`` (Done) and ``reopen``. "Non-terminal" means every other stage except Frozen
itself: Backlog, Coding, Qa, Merge, Blocked, ReviewHold, MergeFailure. A frozen item must be
unfrozen before anything else happens to it. Besides the stage, only ``retries`` changes:
``qa_fail`` adds one, ``unblock`` and ``reopen`` reset it to 0 so a human's second chance
gets the full retry budget.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TypeAlias, assert_never

from pipeline.errors import (
    PipelineError,
    require_count,
    require_positive,
    require_string,
    require_text,
)
from pipeline.model import (
    Abandoned,
    Archived,
    Backlog,
    Blocked,
    Coding,
    Done,
    Frozen,
    Item,
    Merge,
    MergeFailure,
    Qa,
    Rejected,
    ReviewHold,
    Stage,
    Superseded,
    is_resumable,
    stage_name,
)

MOVE_TARGETS: tuple[str, ...] = ("backlog", "coding", "qa", "merge", "done", "archived")
"""The stages ``move N <stage>`` accepts, in board order."""

_MOVE_ORDER = ("coding", "qa", "merge", "done", "archived", "backlog")


# --- events --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Start:
    """Begin work on a Backlog item."""


@dataclass(frozen=True, slots=True)
class Submit:
    """Coding is finished; send it to QA."""


@dataclass(frozen=True, slots=True)
class QaPass:
    """QA passed (or is skipped from Coding); send it to merge."""


@dataclass(frozen=True, slots=True)
class QaFail:
    """QA failed. After ``max_retries`` failures the next one blocks; ``detail`` says why."""

    max_retries: int
    detail: str = ""

    def __post_init__(self) -> None:
        require_count(self.max_retries, "max_retries")
        require_string(self.detail, "detail")


@dataclass(frozen=True, slots=True)
class Merged:
    """The change landed on the base branch as ``merge_commit`` (None for a manual move)."""

    merge_commit: str | None = None

    def __post_init__(self) -> None:
        Done(merge_commit=self.merge_commit)  # the stage's rules, checked up front


@dataclass(frozen=True, slots=True)
class MergeFailed:
    """The merge failed; ``kind`` is a short token (``conflict``, ``no-commits``, …)."""

    kind: str
    reason: str

    def __post_init__(self) -> None:
        MergeFailure(kind=self.kind, reason=self.reason)  # the stage's rules, checked up front


@dataclass(frozen=True, slots=True)
class RetryMerge:
    """Try the failed merge again."""


@dataclass(frozen=True, slots=True)
class Accept:
    """A human accepts a Done item; it is archived as completed."""


@dataclass(frozen=True, slots=True)
class Block:
    """Stop work until a human unblocks it."""

    reason: str = "no reason given"

    def __post_init__(self) -> None:
        require_text(self.reason, "block reason")


@dataclass(frozen=True, slots=True)
class Unblock:
    """Send a Blocked item back to Backlog with a fresh retry budget."""


@dataclass(frozen=True, slots=True)
class Hold:
    """Hold a Qa item for human review."""

    reason: str = "held for review"

    def __post_init__(self) -> None:
        require_text(self.reason, "hold reason")


@dataclass(frozen=True, slots=True)
class Release:
    """Release a held item back to Qa."""


@dataclass(frozen=True, slots=True)
class Freeze:
    """Pause an item, remembering exactly where it was."""


@dataclass(frozen=True, slots=True)
class Unfreeze:
    """Put a frozen item back exactly where it was."""


@dataclass(frozen=True, slots=True)
class Abandon:
    """Give up on an item."""

    reason: str = "no reason given"

    def __post_init__(self) -> None:
        require_text(self.reason, "abandon reason")


@dataclass(frozen=True, slots=True)
class Supersede:
    """Item ``by`` replaces this one."""

    by: int

    def __post_init__(self) -> None:
        require_positive(self.by, "the superseding item's number")


@dataclass(frozen=True, slots=True)
class Reject:
    """Turn an item down; the reason is required."""

    reason: str

    def __post_init__(self) -> None:
        require_text(self.reason, "reject reason")


@dataclass(frozen=True, slots=True)
class Reopen:
    """Bring an abandoned, superseded or rejected item back to Backlog."""


@dataclass(frozen=True, slots=True)
class Move:
    """The chat command ``move N <target>``; ``target`` is one of :data:`MOVE_TARGETS`.

    ``move coding`` = start, ``move qa`` = submit, ``move merge`` = qa_pass, ``move done`` =
    merged (no commit), ``move archived`` = accept; ``move backlog`` has its own row.
    """

    target: str

    def __post_init__(self) -> None:
        if self.target not in MOVE_TARGETS:
            raise PipelineError(
                f"unknown stage {self.target!r}; valid stages: {', '.join(MOVE_TARGETS)}"
            )


Event: TypeAlias = (
    Start
    | Submit
    | QaPass
    | QaFail
    | Merged
    | MergeFailed
    | RetryMerge
    | Accept
    | Block
    | Unblock
    | Hold
    | Release
    | Freeze
    | Unfreeze
    | Abandon
    | Supersede
    | Reject
    | Reopen
    | Move
)

_EVENT_NAMES: dict[type[Event], str] = {
    Start: "start",
    Submit: "submit",
    QaPass: "qa_pass",
    QaFail: "qa_fail",
    Merged: "merged",
    MergeFailed: "merge_failed",
    RetryMerge: "retry_merge",
    Accept: "accept",
    Block: "block",
    Unblock: "unblock",
    Hold: "hold",
    Release: "release",
    Freeze: "freeze",
    Unfreeze: "unfreeze",
    Abandon: "abandon",
    Supersede: "supersede",
    Reject: "reject",
    Reopen: "reopen",
    Move: "move",
}


def event_name(event: Event) -> str:
    """The event's name as in the P3 table: ``qa_fail``, ``accept``, ``move qa``, …"""
    if isinstance(event, Move):
        return f"move {event.target}"
    return _EVENT_NAMES[type(event)]


# --- the table -----------------------------------------------------------------------------


class TransitionError(PipelineError):
    """The item's stage refuses the event. Nothing changed.

    ``str(err)`` is the room's reply, e.g. ``#12 is in coding; cannot accept.``. A refused
    ``move`` adds where the item can go (``It can go to: qa, merge, done, backlog.``) and a
    frozen item adds ``Unfreeze it first.``. ``allowed`` holds the ``move`` targets valid from
    ``stage`` (see :func:`allowed_moves`); ``stage`` and ``event`` are the refused pair.
    """

    def __init__(
        self, item_number: int, stage: Stage, event: Event, allowed: tuple[str, ...]
    ) -> None:
        self.item_number = item_number
        self.stage = stage
        self.event = event
        self.allowed = allowed
        verb = f"move to {event.target}" if isinstance(event, Move) else event_name(event)
        message = f"#{item_number} is in {stage_name(stage)}; cannot {verb}."
        if isinstance(stage, Frozen):
            message += " Unfreeze it first."
        elif isinstance(event, Move):
            message += (
                f" It can go to: {', '.join(allowed)}." if allowed else " It cannot be moved."
            )
        super().__init__(message)


def _next(stage: Stage, event: Event, retries: int) -> tuple[Stage, int] | None:
    """The stage and retry count after ``event``, or None when the table refuses it."""
    match event:
        case Start() | Move(target="coding"):
            if isinstance(stage, Backlog):
                return Coding(), retries
        case Move(target="backlog"):
            if isinstance(stage, Coding | Qa | Merge | MergeFailure):
                return Backlog(), retries
        case Submit() | Move(target="qa"):
            if isinstance(stage, Coding):
                return Qa(), retries
        case QaPass() | Move(target="merge"):
            if isinstance(stage, Qa | Coding):
                return Merge(), retries
        case QaFail(max_retries=limit, detail=detail):
            if isinstance(stage, Qa):
                failures = retries + 1
                if failures <= limit:
                    return Coding(), failures
                why = f"QA failed {failures} times (max retries {limit})"
                return Blocked(f"{why}: {detail}" if detail.strip() else why), failures
        case Merged() | Move(target="done"):
            if isinstance(stage, Merge | Qa | Coding):
                commit = event.merge_commit if isinstance(event, Merged) else None
                return Done(merge_commit=commit), retries
        case MergeFailed(kind=kind, reason=reason):
            if isinstance(stage, Merge):
                return MergeFailure(kind=kind, reason=reason), retries
        case RetryMerge():
            if isinstance(stage, MergeFailure):
                return Merge(), retries
        case Accept() | Move(target="archived"):
            if isinstance(stage, Done):
                return Archived(reason="completed"), retries
        case Block(reason=reason):
            if isinstance(stage, Backlog | Coding | Qa | Merge | MergeFailure):
                return Blocked(reason=reason), retries
        case Unblock():
            if isinstance(stage, Blocked):
                return Backlog(), 0
        case Hold(reason=reason):
            if isinstance(stage, Qa):
                return ReviewHold(reason=reason), retries
        case Release():
            if isinstance(stage, ReviewHold):
                return Qa(), retries
        case Freeze():
            if is_resumable(stage):
                return Frozen(resume_to=stage), retries
        case Unfreeze():
            if isinstance(stage, Frozen):
                return stage.resume_to, retries
        case Abandon(reason=reason):
            if is_resumable(stage):
                return Abandoned(reason=reason), retries
        case Supersede(by=by):
            if is_resumable(stage):
                return Superseded(by=by), retries
        case Reject(reason=reason):
            if is_resumable(stage):
                return Rejected(reason=reason), retries
        case Reopen():
            if isinstance(stage, Abandoned | Superseded | Rejected):
                return Backlog(), 0
        case Move():
            raise PipelineError(f"unknown move target {event.target!r}")  # Move validates
        case _:
            assert_never(event)
    return None


def transition(item: Item, event: Event, now: float) -> Item:
    """Apply ``event`` to ``item`` per the table above.

    Pure and total over the table: the result is a new Item whose stage (and, for
    qa_fail/unblock/reopen, ``retries``) follow the table and whose ``updated_at`` is
    ``now``; every other field is unchanged. Freeze stores the exact current stage, payload
    included, and unfreeze restores it unchanged.

    Raises:
        TransitionError: the item's stage refuses the event; ``item`` is untouched.
        PipelineError: ``supersede`` names the item itself.
    """
    result = _next(item.stage, event, item.retries)
    if result is None:
        raise TransitionError(item.number, item.stage, event, allowed_moves(item.stage))
    if isinstance(event, Supersede) and event.by == item.number:
        raise PipelineError(f"#{item.number} cannot be superseded by itself.")
    stage, retries = result
    return dataclasses.replace(item, stage=stage, retries=retries, updated_at=now)


def allowed_moves(stage: Stage) -> tuple[str, ...]:
    """The ``move`` targets the table accepts from ``stage``: forward moves first, then
    ``backlog`` (from Coding: ``qa, merge, done, backlog``). Empty for Frozen and for the
    finished stages other than Done."""
    return tuple(t for t in _MOVE_ORDER if _next(stage, Move(t), 0) is not None)
