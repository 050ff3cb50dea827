"""The pipeline engine: the one service that changes work items and the rooms' projects.

Every mutation goes through here: the item is looked up in the store (the single source of
truth, S3), the change is checked in full (transition table, dependencies, numbers), exactly
one op is written, and only after its commit are the listeners told. Pure logic over
:class:`~pipeline.store.OpStore`; nothing here imports ``bot/``. Its refusals are
pipeline errors (:class:`ItemNotFound`, :class:`ProjectNotFound`,
:class:`~pipeline.transitions.TransitionError`; the tree is drawn in :mod:`config.errors`).
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import re
import time
from collections.abc import Awaitable, Callable, Collection, Iterable, Sequence
from dataclasses import dataclass

from pipeline.board import BoardView
from pipeline.claims import unchanged
from pipeline.errors import PipelineError
from pipeline.events import (
    Fanout,
    ItemChanged,
    ItemCreated,
    ItemPurged,
    Listener,
    PipelineEvent,
    item_changed,
    item_created,
)
from pipeline.history import HistoryEntry, history_of, numbers
from pipeline.model import (
    Abandoned,
    Column,
    Item,
    ItemKind,
    Origin,
    Rejected,
    Superseded,
    stage_name,
)
from pipeline.ops import KEEP, PROJECT_NAME, AddProject, Change, PurgeItem, SetRoom, UpdateItem
from pipeline.storage import Conn
from pipeline.store import OpStore, ProjectRecord
from pipeline.text_rules import has_hidden
from pipeline.transitions import Event, QaFail, Supersede, transition

_NEVER_DONE = (Abandoned, Superseded, Rejected)
PurgeStep = Callable[[str, int], Awaitable[list[str]]]
MAX_NUMBER = 2**63 - 1
"""The largest item number the store can hold; any larger one names no item (C3)."""


class ItemNotFound(PipelineError):
    """No live item ``number`` in ``project``; ``str(err)`` is ``No item #N in <project>.``"""

    def __init__(self, project: str, number: int) -> None:
        super().__init__(f"No item #{number} in {project}.")
        self.project = project
        self.number = number


class ProjectNotFound(PipelineError):
    """The named project does not exist (or no project exists at all); nothing changed."""


# --- results -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Created:
    """A new item as committed, and warnings for the room (lesson 503)."""

    item: Item
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Changed:
    """An item before and after one committed change, and warnings for the room."""

    before: Item
    after: Item
    warnings: tuple[str, ...] = ()


def project_slug(text: str) -> str:
    """A valid project name (N1) made from ``text``: ``"My App"`` → ``"my-app"``.

    Guarantees: the result matches ``^[a-z0-9][a-z0-9-]{0,62}$``; ``"default"`` when
    ``text`` has no ASCII letter or digit.
    """
    slug = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:63].rstrip("-")
    return slug if PROJECT_NAME.fullmatch(slug) else "default"


class Engine:
    """Reads and changes one store's projects, items and room projects.

    Guarantees: each mutation writes at most one op and either commits fully or changes
    nothing (bad input raises before the write). Read-check-write sequences of one project
    are serialised, so two concurrent moves cannot both pass a check against the same
    stale stage. Listeners run synchronously after the commit, in subscription order; one
    that raises is logged and neither the caller nor the other listeners notice. A caller
    cancelled after the write was queued may miss the listeners (their reconcile covers it).
    """

    def __init__(
        self, store: OpStore, clock: Callable[[], float] = time.time, max_retries: int = 3
    ) -> None:
        self.store = store
        self.max_retries = max_retries
        self.default_project: str | None = None  # a room without `switch` works on this
        self._clock = clock
        self._locks: dict[str, asyncio.Lock] = {}
        self._fanout = Fanout()
        self._purge_steps: list[PurgeStep] = []

    def now(self) -> float:
        """The engine's clock (unix seconds)."""
        return self._clock()

    def on_purge(self, step: PurgeStep) -> None:
        """Run ``step(project, number)`` after every purge's commit, outside the transaction
        (S5: the agent pool kills the item's agent, removes its worktree and branch); the
        layers it returns are added to the purge's."""
        self._purge_steps.append(step)

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        """Call ``listener`` after every commit from now on; returns the unsubscribe function."""
        return self._fanout.subscribe(listener)

    def publish(self, event: PipelineEvent) -> None:
        """Tell the listeners of a change committed elsewhere (another daemon's, K2), as
        they are told of this engine's own commits."""
        self._fanout.emit(event)

    # --- projects and rooms ---------------------------------------------------------------

    async def projects(self) -> list[ProjectRecord]:
        """Every registered project, by name."""
        return list(await self.store.projects())

    async def project(self, name: str) -> ProjectRecord:
        """The project called ``name``.

        Raises:
            ProjectNotFound: ``No project 'x'. Projects: a, b.``
        """
        projects = await self.projects()
        for record in projects:
            if record.name == name:
                return record
        known = ", ".join(p.name for p in projects) or "none yet"
        raise ProjectNotFound(f"No project {name!r}. Projects: {known}.")

    async def ensure_project(
        self,
        name: str,
        path: str,
        base_branch: str = "main",
        timezone: str = "UTC",
        *,
        origin: Origin,
    ) -> ProjectRecord:
        """Register the project unless one of that name exists; return the stored record.

        Idempotent: an existing project is returned unchanged (its path is not updated).
        """
        async with self._lock(name):
            for record in await self.store.projects():
                if record.name == name:
                    return record
            await self.store.append(AddProject(name, path, base_branch, timezone), origin)
            return await self.project(name)

    async def room_project(self, session: str) -> str:
        """The active project of ``session``: its ``switch``, else :attr:`default_project`.

        Raises:
            ProjectNotFound: the room chose none and there is no default project.
        """
        room = await self.store.room(session)
        if room is not None and room.project is not None:
            return room.project
        if self.default_project is None:
            raise ProjectNotFound("No project is set up yet.")
        return self.default_project

    def room_project_in(self, conn: Conn, session: str) -> ProjectRecord | None:
        """Inside a write job: the record :meth:`project` of :meth:`room_project` gives,
        read in the job's transaction (no read of its own); None where those raise."""
        return self.store.room_project_in(conn, session, self.default_project)

    async def switch(self, session: str, name: str, origin: Origin) -> ProjectRecord:
        """Make ``name`` the active project of ``session`` (one ``room.set`` op).

        Raises:
            ProjectNotFound: no such project; the room keeps its project.
        """
        record = await self.project(name)
        await self.store.append(SetRoom(session, project=name), origin)
        return record

    async def set_ambient(self, session: str, on: bool, origin: Origin) -> None:
        """Make ``session`` answer every message (``on``) or only mentions (one ``room.set`` op)."""
        await self.store.append(SetRoom(session, ambient=on), origin)

    async def ambient(self, session: str) -> bool:
        """Whether ``session`` answers without a mention, read from the rooms table (S3)."""
        room = await self.store.room(session)
        return room is not None and room.ambient

    async def set_room_tools(self, session: str, rules: tuple[str, ...], origin: Origin) -> None:
        """Make ``rules`` the tool uses ``session`` allows without asking (one ``room.set``)."""
        await self.store.append(SetRoom(session, tools=rules), origin)

    async def room_tools(self, session: str) -> tuple[str, ...]:
        """The tool uses ``session`` allows without asking (L7), from the rooms table."""
        room = await self.store.room(session)
        return () if room is None else room.tools

    # --- items ----------------------------------------------------------------------------

    async def items(self, project: str) -> list[Item]:
        """Every live item of ``project`` by number (empty for an unknown project)."""
        return await self.store.items(project)

    async def items_numbered(self, project: str, numbers: Iterable[int]) -> list[Item]:
        """The live items of ``project`` among ``numbers``, by number (others left out)."""
        return await self.store.items_numbered(project, numbers)

    async def board_view(
        self,
        project: str,
        columns: Sequence[Column],
        per_column: int,
        newest_first: Collection[Column] = (),
    ) -> BoardView:
        """Per column of ``project``: its count and first ``per_column`` items (``status``)."""
        return await self.store.board_view(project, columns, per_column, newest_first)

    async def find(self, project: str, number: int) -> Item | None:
        """Item ``number`` of ``project``, or None when it never existed or was purged."""
        if not 0 < number <= MAX_NUMBER:
            return None
        return await self.store.item(project, number)

    async def lookup(self, project: str, number: int) -> Item:
        """THE lookup of an item number (C3, lesson 512): the store's live rows only.

        Raises:
            ItemNotFound: ``No item #N in <project>.``
        """
        item = await self.find(project, number)
        if item is None:
            raise ItemNotFound(project, number)
        return item

    async def create(
        self,
        project: str,
        kind: ItemKind,
        title: str,
        origin: Origin,
        depends_on: Iterable[int] = (),
        epic: int | None = None,
        body: str = "",
    ) -> Created:
        """Create an item in Backlog numbered after the last ever issued (P5).

        Every named dependency and the epic must be live items of ``project``; the epic
        must be an epic. A dependency that is already Abandoned, Superseded or Rejected is
        accepted with a warning, since it will never count as done (lesson 503).

        Raises:
            ProjectNotFound, ItemNotFound, PipelineError: nothing was written.
        """
        await self.project(project)
        if has_hidden(title):
            raise PipelineError("A title must not hold control or bidi-override characters.")
        deps = _distinct(depends_on)
        async with self._lock(project):
            warnings = await self._check_deps(project, None, deps)
            if epic is not None:
                parent = await self.lookup(project, epic)
                if parent.kind is not ItemKind.EPIC:
                    raise PipelineError(f"#{epic} is a {parent.kind.value}, not an epic.")
            item = await self.store.create_item(
                project, origin, kind=kind, title=title.strip(), body=body, depends_on=deps,
                epic=epic,
            )  # fmt: skip
        self._fanout.emit(item_created(project, item))
        return Created(item, warnings)

    async def apply(
        self,
        project: str,
        number: int,
        event: Event,
        origin: Origin,
        also: Sequence[Change] = (),
        check: Callable[[Conn], None] | None = None,
    ) -> Changed:
        """Apply ``event`` through the transition table (P3) as one ``item.update`` op.

        ``also`` are ops written before it in the same transaction (a firing timer's
        ``timer.cancel``): all commit together or none does. ``check(conn)`` runs first in
        that transaction (a firing timer's claim). The write commits only if the item is
        still as it was read (:func:`pipeline.claims.unchanged`), so of two daemons making
        the same change at once, one does and the other is refused.

        Raises:
            ItemNotFound: no such item (or ``supersede … by`` names a missing one).
            TransitionError: the stage refuses the event; its text lists where it can go.
        """
        async with self._lock(project):
            before = await self.lookup(project, number)
            after = transition(before, event, self._clock())
            if isinstance(event, Supersede):
                await self.lookup(project, event.by)
            retries = after.retries if after.retries != before.retries else KEEP
            change = UpdateItem(project, number, stage=after.stage, retries=retries)

            def guard(conn: Conn) -> None:
                if check is not None:
                    check(conn)
                unchanged(conn, project, before)

            applied = (await self.store.append_many([*also, change], origin, guard))[-1]
        after = dataclasses.replace(after, updated_at=applied.op.ts)
        self._changed(project, before, after, origin)
        return Changed(before, after)

    async def qa_failed(
        self, project: str, number: int, origin: Origin, detail: str = ""
    ) -> Changed:
        """``qa_fail`` with the engine's ``max_retries``: back to Coding, or Blocked."""
        return await self.apply(project, number, QaFail(self.max_retries, detail), origin)

    async def set_depends(
        self, project: str, number: int, depends_on: Iterable[int], origin: Origin
    ) -> Changed:
        """Replace the item's dependencies (empty clears them); no op when nothing changes.

        Refuses unknown items, the item itself and cycles; warns about dependencies that
        will never be done (lesson 503).

        Raises:
            ItemNotFound, PipelineError: nothing was written.
        """
        deps = _distinct(depends_on)
        async with self._lock(project):
            before = await self.lookup(project, number)
            if number in deps:
                raise PipelineError(f"#{number} cannot depend on itself.")
            warnings = await self._check_deps(project, number, deps)
            if deps == before.depends_on:
                return Changed(before, before, warnings)
            change = UpdateItem(project, number, depends_on=deps)
            guard = functools.partial(unchanged, project=project, item=before)
            applied = (await self.store.append_many([change], origin, guard))[0]
        after = dataclasses.replace(before, depends_on=deps, updated_at=applied.op.ts)
        self._changed(project, before, after, origin)
        return Changed(before, after, warnings)

    async def purge(self, project: str, number: int, origin: Origin) -> list[str]:
        """Remove the item and its timers in one transaction (S5); return the layers cleared.

        Idempotent: an item purged before writes nothing and gives what the purge steps
        still cleared (usually ``[]``). Its number is
        never issued again, across restarts (P5).

        Raises:
            ItemNotFound: ``project`` never issued ``number``.
        """
        async with self._lock(project):
            item = await self.find(project, number)
            if item is None:
                if not 0 < number < await self.store.next_number(project):
                    raise ItemNotFound(project, number)
                return await self._after_purge(project, number)
            applied = await self.store.append(PurgeItem(project, number), origin)
        layers = tuple(applied.effects)
        self._fanout.emit(ItemPurged(project, number, item.title, layers, origin, applied.op.ts))
        return list(layers) + await self._after_purge(project, number)

    async def _after_purge(self, project: str, number: int) -> list[str]:
        layers: list[str] = []
        for step in self._purge_steps:
            layers += await step(project, number)
        return layers

    async def history(self, project: str, number: int) -> list[HistoryEntry]:
        """The item's ops from the op log, oldest first: who did what, and when."""
        return history_of(await self.store.item_ops(project, number))

    # --- helpers --------------------------------------------------------------------------

    def _lock(self, project: str) -> asyncio.Lock:
        return self._locks.setdefault(project, asyncio.Lock())

    def _changed(self, project: str, before: Item, after: Item, origin: Origin) -> None:
        self._fanout.emit(item_changed(project, before, after, origin))

    async def _check_deps(
        self, project: str, number: int | None, deps: tuple[int, ...]
    ) -> tuple[str, ...]:
        """Refuse missing dependencies and cycles; warn about never-done ones."""
        warnings = []
        for dep in deps:
            item = await self.lookup(project, dep)
            if isinstance(item.stage, _NEVER_DONE):
                warnings.append(
                    f"⚠️ {item.label} is {stage_name(item.stage)}: it will never be done, so"
                    " this dependency will never be met on its own."
                )
        if number is not None and deps:
            graph = {item.number: item.depends_on for item in await self.store.items(project)}
            graph[number] = deps
            if _reaches(graph, deps, number):
                raise PipelineError(
                    f"#{number} cannot depend on {numbers(deps)}: that would make a cycle."
                )
        return tuple(warnings)


def _distinct(values: Iterable[int]) -> tuple[int, ...]:
    return tuple(dict.fromkeys(values))


def _reaches(graph: dict[int, tuple[int, ...]], start: tuple[int, ...], target: int) -> bool:
    seen: set[int] = set()
    todo = list(start)
    while todo:
        node = todo.pop()
        if node == target:
            return True
        if node not in seen:
            seen.add(node)
            todo.extend(graph.get(node, ()))
    return False


__all__ = [
    "Changed",
    "Created",
    "Engine",
    "HistoryEntry",
    "ItemChanged",
    "ItemCreated",
    "ItemNotFound",
    "ItemPurged",
    "Listener",
    "PipelineEvent",
    "ProjectNotFound",
    "project_slug",
]
