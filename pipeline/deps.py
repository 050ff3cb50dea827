"""Dependency promotion (P4): a Backlog item starts when everything it depends on is done.

An item in Backlog with a non-empty ``depends_on`` moves to Coding (origin
``SystemOrigin("deps", "dependencies met")``) once every dependency is Done or Archived.
Items without ``depends_on`` wait for a human. A dependency that becomes Abandoned,
Superseded or Rejected, or is purged, will never be done: the rooms following the project
are warned, and the dependent stays where it is (lesson 503: never a silent promotion).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

from pipeline.engine import Engine
from pipeline.errors import PipelineError
from pipeline.events import ItemChanged, ItemCreated, ItemPurged, PipelineEvent
from pipeline.model import (
    Abandoned,
    Archived,
    Backlog,
    Done,
    Item,
    Rejected,
    Superseded,
    SystemOrigin,
    stage_name,
)
from pipeline.transitions import Start

log = logging.getLogger("musher.deps")

ORIGIN = SystemOrigin("deps", "dependencies met")
_MET = (Done, Archived)

Warn = Callable[[str, str], None]
"""``warn(project, text)``: tell the rooms that follow ``project``."""


def ready(item: Item, by_number: dict[int, Item]) -> bool:
    """Whether ``item`` is a Backlog item whose (non-empty) dependencies are all met.

    A purged dependency is not met: it can never be done.
    """
    if not isinstance(item.stage, Backlog) or not item.depends_on:
        return False
    deps = [by_number.get(n) for n in item.depends_on]
    return all(dep is not None and isinstance(dep.stage, _MET) for dep in deps)


class DependencyPromoter:
    """The bus subscriber ``deps``.

    Guarantees: idempotent — promoting is a ``start`` through the engine, which refuses an
    item that is no longer in Backlog, so a promotion happens at most once however often
    an event is seen or a reconcile runs, and on however many daemons (the engine's write
    is a compare-and-set, :func:`pipeline.claims.unchanged`). Warnings are given once, on
    the event that killed the dependency; :meth:`reconcile` promotes what was missed but
    never repeats warnings.
    """

    name = "deps"

    def __init__(self, engine: Engine, warn: Warn) -> None:
        self._engine = engine
        self._warn = warn

    async def handle(self, event: PipelineEvent) -> None:
        """Promote the dependents an event may have unblocked; warn about dead ones (only
        for this daemon's own changes: the committing daemon warns, once)."""
        match event:
            case ItemChanged(from_stage=before, to_stage=after) if before == after:
                await self.promote_ready(event.project, only=(event.number,))
            case ItemChanged(to_stage=Done() | Archived()):
                await self.promote_ready(event.project, after=event.number)
            case ItemChanged(
                to_stage=Abandoned() | Superseded() | Rejected() as stage, remote=False
            ):
                await self._warn_dependents(event, stage_name(stage))
            case ItemCreated(depends_on=deps) if deps:
                await self.promote_ready(event.project, only=(event.number,))
            case ItemPurged(remote=False):
                await self._warn_dependents(event, "purged")
            case _:
                pass

    async def reconcile(self) -> None:
        """Promote every ready item of every project (what was missed while down)."""
        for project in await self._engine.projects():
            await self.promote_ready(project.name)

    async def aclose(self) -> None:
        """Nothing to release."""

    async def promote_ready(
        self, project: str, *, only: Sequence[int] = (), after: int | None = None
    ) -> list[int]:
        """Start the ready Backlog items of ``project``; return the numbers promoted.

        ``only`` limits the check to those items; ``after`` to the dependents of that item.
        An item that moved meanwhile is skipped (the engine's check is the last word).
        """
        items = await self._engine.items(project)
        by_number = {item.number: item for item in items}
        promoted = []
        for item in items:
            if only and item.number not in only:
                continue
            if after is not None and after not in item.depends_on:
                continue
            if not ready(item, by_number):
                continue
            try:
                await self._engine.apply(project, item.number, Start(), ORIGIN)
            except PipelineError as err:  # moved or purged since we read it
                log.info("not promoting %s #%d: %s", project, item.number, err)
                continue
            promoted.append(item.number)
        return promoted

    async def _warn_dependents(self, event: ItemChanged | ItemPurged, what: str) -> None:
        """Warn about each Backlog item of the project waiting on the item of ``event``."""
        for item in await self._engine.items(event.project):
            if event.number in item.depends_on and isinstance(item.stage, Backlog):
                self._warn(
                    event.project,
                    f"⚠️ {item.label} depends on #{event.number} {event.title}, which is"
                    f" {what}: it will not start on its own (`depends {item.number} …`"
                    " changes what it waits for).",
                )
