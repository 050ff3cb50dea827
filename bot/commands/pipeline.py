"""The pipeline commands (C2): the board, items, transitions, dependencies.

Each handler resolves the room's active project (its ``switch``, else the default project),
names items through the engine's one lookup (C3) and credits ``ctx.origin`` in the op log.
A command writes at most one op, after every check passed, so bad input changes nothing
(C4); refusals (unknown item, refused transition) come back as the engine's own words.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, Literal, Protocol

from pydantic import BeforeValidator, Field, model_validator
from pydantic.json_schema import SkipJsonSchema
from pydantic_core import PydanticCustomError

from bot.commands.args import Args, CleanText, ItemNumber, Option, Rest, clean_text
from bot.commands.board import (
    BOARD_COLUMNS,
    NEWEST_FIRST,
    PER_COLUMN,
    agent_line,
    render_history,
    render_item,
    render_view,
    stage_reason,
)
from bot.commands.registry import CommandContext, Permission, Registry
from bot.messages import Reply
from pipeline.engine import Changed, Engine
from pipeline.model import Frozen, Item, ItemKind, stage_name
from pipeline.transitions import (
    MOVE_TARGETS,
    Abandon,
    Accept,
    Block,
    Event,
    Freeze,
    Hold,
    Move,
    Reject,
    Release,
    Reopen,
    Supersede,
    Unblock,
    Unfreeze,
)

_SEPARATORS = re.compile(r"[,\s]+")


def _lower(value: object) -> object:
    return value.strip().lower() if isinstance(value, str) else value


def _numbers(value: object) -> object:
    """``"3,4"``, ``"#3 #4"`` → ``["3", "4"]`` (each then checked as an item number)."""
    if isinstance(value, str):
        if value.strip().lower() == "none":
            return ()
        words = [w.removeprefix("#") for w in _SEPARATORS.split(value) if w]
        if not words or not all(w.isdecimal() for w in words):
            raise PydanticCustomError("numbers", "give item numbers like 3 4, or none")
        return words
    return value


Numbers = Annotated[tuple[ItemNumber, ...], BeforeValidator(_numbers)]
Reason = Annotated[
    str | None, BeforeValidator(clean_text), Rest, Field(description="why", max_length=500)
]


class ItemArgs(Args):
    number: ItemNumber


class StatusArgs(Args):
    number: Annotated[ItemNumber | None, Field(description="one item's detail")] = None


class NewArgs(Args):
    kind: Annotated[ItemKind, BeforeValidator(_lower), Field(description="what sort of work")]
    title: Annotated[CleanText, Rest, Field(min_length=1, max_length=200, description="one line")]
    depends: Annotated[Numbers, Option("--depends"), Field(description="item numbers")] = ()
    epic: Annotated[ItemNumber | None, Option("--epic"), Field(description="its epic")] = None


class MoveArgs(Args):
    number: ItemNumber
    stage: Annotated[
        str, Field(description="target stage", json_schema_extra={"enum": list(MOVE_TARGETS)})
    ]

    @model_validator(mode="before")
    @classmethod
    def _known_stage(cls, data: Any) -> Any:
        if isinstance(data, dict):
            stage = _lower(data.get("stage"))
            if stage not in MOVE_TARGETS:
                raise PydanticCustomError(
                    "stage", "Valid stages: {stages}.", {"stages": ", ".join(MOVE_TARGETS)}
                )
            data = {**data, "stage": stage}
        return data


class DependsArgs(Args):
    number: ItemNumber
    depends_on: Annotated[Numbers, Rest, Field(description="item numbers, or none to clear")]


class ReasonArgs(Args):
    number: ItemNumber
    reason: Reason = None


class RejectArgs(Args):
    number: ItemNumber
    reason: Annotated[CleanText, Rest, Field(min_length=1, max_length=500, description="why")]


class SupersedeArgs(Args):
    number: ItemNumber
    by_word: SkipJsonSchema[Annotated[Literal["by"], BeforeValidator(_lower)]] = "by"
    by: Annotated[ItemNumber, Field(description="the item that replaces it")]


def changed_line(changed: Changed) -> str:
    """``#3 Login page: coding → blocked (no keys).``"""
    before, after = changed.before, changed.after
    reason = "" if isinstance(after.stage, Frozen) else stage_reason(after.stage)
    tail = f" ({reason})" if reason else ""
    return f"{after.label}: {stage_name(before.stage)} → {stage_name(after.stage)}{tail}."


def register_pipeline(registry: Registry) -> None:
    """Add the board, item and transition commands to ``registry``."""
    _register_board(registry)
    _register_items(registry)
    _register_purge(registry)
    _register_transitions(registry)


class Following(Protocol):
    """Where a room's use of the pipeline is noted (:class:`bot.followers.Followers`)."""

    def note(self, session: str, project: str) -> None: ...


@dataclass(frozen=True, slots=True)
class RoomProjects:
    """The part the pipeline and timer commands name ``rooms``: the engine, and who follows
    what."""

    engine: Engine
    followers: Following

    async def room_project(self, ctx: CommandContext) -> tuple[Engine, str]:
        """The engine and the room's active project; the room follows that project from now
        on (its notifications and audit lines, see :mod:`bot.followers`)."""
        project = await self.engine.room_project(ctx.session)
        self.followers.note(ctx.session, project)
        return self.engine, project


def _register_board(registry: Registry) -> None:
    @registry.command(
        "status", summary="The board, or one item's detail", usage="status [N]", args=StatusArgs
    )
    async def status(ctx: CommandContext, args: StatusArgs, *, rooms: RoomProjects) -> Reply:
        engine, project = await rooms.room_project(ctx)
        if args.number is None:
            view = await engine.board_view(project, BOARD_COLUMNS, PER_COLUMN, NEWEST_FIRST)
            return Reply(render_view(project, view, engine.now()))
        item = await engine.lookup(project, args.number)
        text = render_item(project, item, await _related(engine, project, item), engine.now())
        line = agent_line(item, await engine.store.agent_run(project, item.number))
        return Reply(f"{text}\n{line}" if line else text)

    @registry.command(
        "show", summary="An item in full, with its history", usage="show N", args=ItemArgs
    )
    async def show(ctx: CommandContext, args: ItemArgs, *, rooms: RoomProjects) -> Reply:
        engine, project = await rooms.room_project(ctx)
        item = await engine.lookup(project, args.number)
        text = render_item(project, item, await _related(engine, project, item), engine.now())
        if item.body.strip():
            text += f"\n\n{item.body.strip()}"
        record = await engine.project(project)
        history = render_history(await engine.history(project, item.number), record.timezone)
        return Reply(f"{text}\n\n{history}")


async def _related(engine: Engine, project: str, item: Item) -> list[Item]:
    """The items :func:`render_item` names besides ``item``: its dependencies and epic."""
    epic = () if item.epic is None else (item.epic,)
    return await engine.items_numbered(project, (*item.depends_on, *epic))


def _register_items(registry: Registry) -> None:
    @registry.command(
        "new",
        summary="Add a story, bug, spike, refactor or epic to the backlog",
        usage="new story|bug|spike|refactor|epic <title…> [--depends 3,4] [--epic N]",
        args=NewArgs,
    )
    async def new(ctx: CommandContext, args: NewArgs, *, rooms: RoomProjects) -> Reply:
        engine, project = await rooms.room_project(ctx)
        created = await engine.create(
            project, args.kind, args.title, ctx.origin, depends_on=args.depends, epic=args.epic
        )
        item = created.item
        lines = [f"Created {item.label} ({item.kind.value}) in {project}."]
        if item.depends_on:
            lines.append(f"Depends on: {', '.join(f'#{n}' for n in item.depends_on)}.")
        return Reply("\n".join([*lines, *created.warnings]))

    @registry.command(
        "depends",
        summary="Set what an item waits for (none clears it)",
        usage="depends N <M…|none>",
        args=DependsArgs,
    )
    async def depends(ctx: CommandContext, args: DependsArgs, *, rooms: RoomProjects) -> Reply:
        engine, project = await rooms.room_project(ctx)
        changed = await engine.set_depends(project, args.number, args.depends_on, ctx.origin)
        deps = changed.after.depends_on
        line = (
            f"{changed.after.label} now depends on {', '.join(f'#{n}' for n in deps)}."
            if deps
            else f"{changed.after.label} depends on nothing now."
        )
        return Reply("\n".join([line, *changed.warnings]))


def _register_purge(registry: Registry) -> None:
    @registry.command(
        "purge",
        summary="Delete an item for good (its number is never reused)",
        usage="purge N",
        args=ItemArgs,
        permission=Permission.ADMIN,
        destructive=True,
    )
    async def purge(ctx: CommandContext, args: ItemArgs, *, rooms: RoomProjects) -> Reply:
        engine, project = await rooms.room_project(ctx)
        item = await engine.find(project, args.number)
        layers = await engine.purge(project, args.number, ctx.origin)
        if not layers or item is None:
            return Reply(f"#{args.number} is already gone from {project}; nothing to clear.")
        return Reply(f"Purged {item.label} from {project}. Cleared: {', '.join(layers)}.")


_TRANSITIONS: tuple[tuple[str, str, str, type[Args], Callable[[Any], Event]], ...] = (
    ("move", "Move an item to another stage", "move N <stage>", MoveArgs,
     lambda a: Move(a.stage)),
    ("block", "Block an item until someone unblocks it", "block N [reason]", ReasonArgs,
     lambda a: Block(a.reason) if a.reason else Block()),
    ("unblock", "Send a blocked item back to the backlog", "unblock N", ItemArgs,
     lambda a: Unblock()),
    ("freeze", "Pause an item where it is", "freeze N", ItemArgs, lambda a: Freeze()),
    ("unfreeze", "Resume a frozen item where it was", "unfreeze N", ItemArgs,
     lambda a: Unfreeze()),
    ("hold", "Hold an item in QA for review", "hold N [reason]", ReasonArgs,
     lambda a: Hold(a.reason) if a.reason else Hold()),
    ("release", "Release a held item back to QA", "release N", ItemArgs, lambda a: Release()),
    ("accept", "Accept a done item (archives it)", "accept N", ItemArgs, lambda a: Accept()),
    ("abandon", "Give up on an item", "abandon N", ItemArgs, lambda a: Abandon()),
    ("supersede", "Mark an item as replaced by another", "supersede N by M", SupersedeArgs,
     lambda a: Supersede(a.by)),
    ("reject", "Turn an item down", "reject N <reason>", RejectArgs, lambda a: Reject(a.reason)),
    ("reopen", "Bring an abandoned, superseded or rejected item back", "reopen N", ItemArgs,
     lambda a: Reopen()),
)  # fmt: skip
"""name, summary, usage, argument model, and the event the arguments make."""


def _register_transitions(registry: Registry) -> None:
    for name, summary, usage, model, make in _TRANSITIONS:
        registry.command(name, summary=summary, usage=usage, args=model)(_transition(make))


def _transition(make: Callable[[Any], Event]) -> Callable[..., Any]:
    async def handler(ctx: CommandContext, args: Any, *, rooms: RoomProjects) -> Reply:
        engine, project = await rooms.room_project(ctx)
        event = make(args)
        changed = await engine.apply(project, args.number, event, ctx.origin)
        return Reply(changed_line(changed))

    return handler
