"""The timer commands (C2, T1): ``timer N <HH:MM|+30m> <start|move STAGE>``, ``timers``,
``timer cancel ID``.

Times are read and shown in the room's project's time zone. A timer belongs to an item of
the room's active project; ``timer cancel`` takes any timer's id (ids are unique).
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import BeforeValidator, Field, model_validator
from pydantic_core import PydanticCustomError

from bot.commands.args import Args, ItemNumber, NoArgs, Rest
from bot.commands.pipeline import RoomProjects
from bot.commands.registry import CommandContext, Registry
from bot.messages import Reply
from pipeline.errors import PipelineError
from pipeline.store import TimerRecord
from pipeline.timers import Timers, target_of
from pipeline.timespec import (
    ACTION_HELP,
    WHEN_HELP,
    format_span,
    format_when,
    parse_action,
    parse_when,
    zone,
)
from pipeline.transitions import Move, transition

_WHEN = r"^(\+\d{1,8}[smhd]|\d{1,2}:\d{2})$"


def _when(value: object) -> object:
    if isinstance(value, str):
        value = value.strip().lower()
        if not re.fullmatch(_WHEN, value):
            raise PydanticCustomError("when", "use {help}.", {"help": WHEN_HELP})
    return value


When = Annotated[
    str, BeforeValidator(_when), Field(description=WHEN_HELP, json_schema_extra={"pattern": _WHEN})
]


class TimerArgs(Args):
    number: ItemNumber
    when: When
    action: Annotated[str, Rest, Field(min_length=1, max_length=40, description=ACTION_HELP)]

    @model_validator(mode="before")
    @classmethod
    def _known_action(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("action"), str):
            try:
                parse_action(data["action"])
            except PipelineError as err:
                raise PydanticCustomError("action", str(err)) from None
        return data


class TimerCancelArgs(Args):
    id: Annotated[str, Field(pattern=r"^\S{1,200}$", description="the timer's id (see timers)")]


def register_timers(registry: Registry) -> None:
    """Add ``timer``, ``timers`` and ``timer cancel`` to ``registry``."""

    @registry.command(
        "timer",
        summary="Move an item at a time: HH:MM in the project's zone, or +30m, +2h, +1d",
        usage="timer N <HH:MM|+30m> <start|move STAGE>",
        args=TimerArgs,
    )
    async def timer(
        ctx: CommandContext, args: TimerArgs, *, rooms: RoomProjects, timers: Timers
    ) -> Reply:
        engine, project = await rooms.room_project(ctx)
        item = await engine.lookup(project, args.number)
        tz = zone((await engine.project(project)).timezone)
        now = engine.now()
        fire_at = parse_when(args.when, now, tz)
        target = parse_action(args.action)
        transition(item, Move(target), now)  # refused now: say why, as `move` does
        record = await timers.add(project, item.number, fire_at, target, ctx.origin)
        return Reply(
            f"⏰ Timer {record.id}: {item.label} → {target} at {format_when(fire_at, tz)},"
            f" in {format_span(fire_at - now)}. Cancel with `timer cancel {record.id}`."
        )

    @registry.command("timers", summary="The pending timers", usage="timers", args=NoArgs)
    async def pending(
        ctx: CommandContext, args: NoArgs, *, rooms: RoomProjects, timers: Timers
    ) -> Reply:
        engine, project = await rooms.room_project(ctx)
        records = await timers.pending(project)
        if not records:
            return Reply(f"No timers in {project}.")
        tz = zone((await engine.project(project)).timezone)
        now = engine.now()
        lines = [f"Timers in {project}:"]
        lines += [f"  {_describe(r)} at {format_when(r.fire_at, tz)}"
                  f" (in {format_span(r.fire_at - now)})" for r in records]  # fmt: skip
        return Reply("\n".join(lines))

    @registry.command(
        "timer cancel", summary="Cancel a timer", usage="timer cancel ID", args=TimerCancelArgs
    )
    async def cancel(ctx: CommandContext, args: TimerCancelArgs, *, timers: Timers) -> Reply:
        record = await timers.cancel(args.id.strip(), ctx.origin)
        if record is None:
            return Reply(f"No timer {args.id}. See `timers`.")
        return Reply(f"Cancelled timer {_describe(record)}.")


def _describe(record: TimerRecord) -> str:
    """``t3fa21c: #12 → coding``."""
    item = f"#{record.item}" if record.item is not None else record.project
    return f"{record.id}: {item} → {target_of(record) or record.action}"
