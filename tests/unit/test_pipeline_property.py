"""R3: the engine against a pure model of DESIGN P3–P5, driven by a hypothesis state machine.

Every engine operation (create with dependencies, every event of the P3 table, ``move`` to
each target, ``set_depends``, ``purge``, and two moves of one item racing through
``asyncio.gather``) runs against the real Engine + OpStore on a temp SQLite database and
against :class:`Model`, written here from the DESIGN text and not from the implementation.
After every step: the engine refused exactly what the model refuses (no illegal transition
accepted, no legal one refused), every live item's stage, retries and dependencies equal the
model's, every accepted change wrote one op and every refusal none, and numbers are never
reused. At the end of each run ``verify()`` is clean and replaying the log into a scratch
database reproduces the materialised tables exactly.

Two points P3 leaves open are taken from the engine's documented contract: ``unblock`` and
``reopen`` reset ``retries`` to 0 (a fresh retry budget), and the reason of a Blocked stage
reached through ``qa_fail`` is the engine's own wording (the model checks only the stage).
"""

from __future__ import annotations

import asyncio
import copy
import tempfile
from collections import deque
from collections.abc import Callable, Coroutine, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from bot.db import Database, Db
from bot.store_url import open_db
from pipeline import transitions as tr
from pipeline.audit import replay_into, verify
from pipeline.board import board_view
from pipeline.engine import Changed, Created, Engine, ItemNotFound
from pipeline.errors import PipelineError
from pipeline.keys import NodeKey
from pipeline.materialise import read_tables
from pipeline.model import (
    Abandoned,
    Archived,
    Backlog,
    Blocked,
    Coding,
    Column,
    Done,
    Frozen,
    Item,
    ItemKind,
    Merge,
    MergeFailure,
    Qa,
    Rejected,
    ReviewHold,
    Stage,
    Superseded,
    SystemOrigin,
    UserOrigin,
)
from pipeline.store import OpStore
from tests.fakes.postgres import Postgres

T = TypeVar("T")
PROJECT = "demo"
ALICE = UserOrigin("web", "alice", "lobby")
MAX_RETRIES = 1  # the engine's own limit, used by ``qa_fail`` without an explicit one
ROOMY = 8  # no more creations past this many live items: the rest of the steps work on them
NEWEST = (Column.DONE, Column.CLOSED)  # newest first, as ``status`` lists them

# --- the model (DESIGN P3–P5), in plain tuples -----------------------------------------------
#
# A stage is ``(name, *fields)``: ``("backlog",)``, ``("blocked", reason)``,
# ``("merge-failure", kind, reason)``, ``("frozen", <inner stage>)``. An event is
# ``(name, *arguments)``: ``("move", "qa")``, ``("qa_fail", limit or None)``, …


class _Any:
    """A stage field the design leaves to the engine: equal to anything."""

    def __repr__(self) -> str:
        return "ANY"

    def __deepcopy__(self, memo: dict[int, object]) -> _Any:
        return self  # copies of the model (for trying orders) keep the one marker


ANY = _Any()
OPEN = {"backlog", "coding", "qa", "merge", "blocked", "review-hold", "merge-failure"}
"""P3's "non-terminal": every stage that is neither finished nor frozen."""
CLOSED = {"abandoned", "superseded", "rejected"}
"""Finished and never done: reopen takes them back; naming one as a dependency warns (P4)."""
TARGETS = ("backlog", "coding", "qa", "merge", "done", "archived")

# Refusals, by what the caller is told.
NOT_FOUND, TABLE, BAD = "not found", "table", "bad"

ModelStage = tuple[Any, ...]
ModelEvent = tuple[Any, ...]
Goal = Callable[[ModelStage, int], bool]


def _in(name: str) -> Goal:
    return lambda stage, retries: stage[0] == name


def _frozen_in(name: str) -> Goal:
    return lambda stage, retries: stage[0] == "frozen" and stage[1][0] == name


GOALS: dict[str, Goal] = {
    **{name: _in(name) for name in (*TARGETS, "blocked", "review-hold", "merge-failure")},
    **{name: _in(name) for name in CLOSED},
    **{f"frozen in {name}": _frozen_in(name) for name in OPEN},
    "coding after a qa_fail": lambda stage, retries: stage[0] == "coding" and retries > 0,
    "blocked by qa_fail": lambda stage, retries: stage[0] == "blocked" and retries > 0,
}
"""Where ``drive_then_probe`` takes an item (by the model's shortest path) before probing."""


def next_stage(stage: ModelStage, retries: int, event: ModelEvent) -> tuple[ModelStage, int] | None:
    """The P3 table: the stage and retries after ``event``, or None when it is refused."""
    name, kind = stage[0], event[0]
    target = event[1] if kind == "move" else None
    if kind == "start" or target == "coding":
        return (("coding",), retries) if name == "backlog" else None
    if target == "backlog":
        return (
            (("backlog",), retries) if name in {"coding", "qa", "merge", "merge-failure"} else None
        )
    if kind == "submit" or target == "qa":
        return (("qa",), retries) if name == "coding" else None
    if kind == "qa_pass" or target == "merge":
        return (("merge",), retries) if name in {"qa", "coding"} else None
    if kind == "qa_fail":
        if name != "qa":
            return None
        limit = MAX_RETRIES if event[1] is None else event[1]
        failures = retries + 1
        return (("coding",) if failures <= limit else ("blocked", ANY)), failures
    if kind == "merged" or target == "done":
        commit = event[1] if kind == "merged" else None
        return (("done", commit), retries) if name in {"merge", "qa", "coding"} else None
    if kind == "merge_failed":
        return (("merge-failure", event[1], event[2]), retries) if name == "merge" else None
    if kind == "retry_merge":
        return (("merge",), retries) if name == "merge-failure" else None
    if kind == "accept" or target == "archived":
        return (("archived", "completed"), retries) if name == "done" else None
    if kind == "block":
        ok = name in {"backlog", "coding", "qa", "merge", "merge-failure"}
        return (("blocked", event[1]), retries) if ok else None
    if kind == "unblock":
        return (("backlog",), 0) if name == "blocked" else None
    if kind == "hold":
        return (("review-hold", event[1]), retries) if name == "qa" else None
    if kind == "release":
        return (("qa",), retries) if name == "review-hold" else None
    if kind == "freeze":
        return (("frozen", stage), retries) if name in OPEN else None
    if kind == "unfreeze":
        return (stage[1], retries) if name == "frozen" else None
    if kind in {"abandon", "supersede", "reject"}:
        closed = {"abandon": "abandoned", "supersede": "superseded", "reject": "rejected"}
        return ((closed[kind], event[1]), retries) if name in OPEN else None
    if kind == "reopen":
        return (("backlog",), 0) if name in CLOSED else None
    raise AssertionError(f"the model has no event {event!r}")


@dataclass
class ModelItem:
    stage: ModelStage
    retries: int
    deps: tuple[int, ...]


@dataclass(frozen=True)
class Outcome:
    """What the model expects: a refusal kind (or None) and, if accepted, its result."""

    refusal: str | None
    warnings: int = 0
    number: int | None = None  # create: the number issued
    layers: tuple[str, ...] = ()  # purge: what was cleared


@dataclass
class Model:
    """One project's items, the last number ever issued (P5) and the op count."""

    items: dict[int, ModelItem] = field(default_factory=dict)
    last: int = 0
    ops: int = 1  # project.create

    def _warnings(self, deps: Iterable[int]) -> int:
        return sum(self.items[d].stage[0] in CLOSED for d in deps)

    def create(self, deps: tuple[int, ...]) -> Outcome:
        if any(d not in self.items for d in deps):
            return Outcome(NOT_FOUND)
        warnings = self._warnings(deps)
        self.last += 1
        self.items[self.last] = ModelItem(("backlog",), 0, deps)
        self.ops += 1
        return Outcome(None, warnings, number=self.last)

    def apply(self, number: int, event: ModelEvent) -> Outcome:
        item = self.items.get(number)
        if item is None:
            return Outcome(NOT_FOUND)
        after = next_stage(item.stage, item.retries, event)
        if after is None:
            return Outcome(TABLE)
        if event[0] == "supersede":
            if event[1] == number:
                return Outcome(BAD)
            if event[1] not in self.items:
                return Outcome(NOT_FOUND)
        item.stage, item.retries = after
        self.ops += 1
        return Outcome(None)

    def set_depends(self, number: int, deps: tuple[int, ...]) -> Outcome:
        item = self.items.get(number)
        if item is None:
            return Outcome(NOT_FOUND)
        if number in deps:
            return Outcome(BAD)
        if any(d not in self.items for d in deps):
            return Outcome(NOT_FOUND)
        if self._cycle(number, deps):
            return Outcome(BAD)
        warnings = self._warnings(deps)
        if deps != item.deps:
            item.deps = deps
            self.ops += 1
        return Outcome(None, warnings)

    def _cycle(self, number: int, deps: tuple[int, ...]) -> bool:
        """Would ``number`` reach itself through the live items' dependencies?"""
        graph = {n: i.deps for n, i in self.items.items()} | {number: deps}
        seen: set[int] = set()
        todo = list(deps)
        while todo:
            n = todo.pop()
            if n == number:
                return True
            if n not in seen:
                seen.add(n)
                todo.extend(graph.get(n, ()))
        return False

    def purge(self, number: int) -> Outcome:
        if number > self.last:
            return Outcome(NOT_FOUND)
        if self.items.pop(number, None) is None:
            return Outcome(None)  # purged before: idempotent, nothing written
        self.ops += 1
        return Outcome(None, layers=("item row",))


# --- between the model and the engine --------------------------------------------------------


def observe(stage: Stage) -> ModelStage:
    """An engine stage in the model's terms."""
    match stage:
        case Backlog():
            return ("backlog",)
        case Coding():
            return ("coding",)
        case Qa():
            return ("qa",)
        case Merge():
            return ("merge",)
        case Done(merge_commit=commit):
            return ("done", commit)
        case Archived(reason=reason):
            return ("archived", reason)
        case Blocked(reason=reason):
            return ("blocked", reason)
        case ReviewHold(reason=reason):
            return ("review-hold", reason)
        case MergeFailure(kind=kind, reason=reason):
            return ("merge-failure", kind, reason)
        case Frozen(resume_to=inner):
            return ("frozen", observe(inner))
        case Abandoned(reason=reason):
            return ("abandoned", reason)
        case Superseded(by=by):
            return ("superseded", by)
        case Rejected(reason=reason):
            return ("rejected", reason)
    raise AssertionError(f"not a stage: {stage!r}")


def same(model: Any, seen: Any) -> bool:
    """Equal, where the model's ``ANY`` matches anything."""
    if isinstance(model, _Any):
        return True
    if isinstance(model, tuple):
        return (
            isinstance(seen, tuple)
            and len(model) == len(seen)
            and all(same(a, b) for a, b in zip(model, seen, strict=True))
        )
    return bool(model == seen)


EVENT_TYPES: dict[str, Callable[..., tr.Event]] = {
    "start": tr.Start, "submit": tr.Submit, "qa_pass": tr.QaPass, "qa_fail": tr.QaFail,
    "merged": tr.Merged, "merge_failed": tr.MergeFailed, "retry_merge": tr.RetryMerge,
    "accept": tr.Accept, "block": tr.Block, "unblock": tr.Unblock, "hold": tr.Hold,
    "release": tr.Release, "freeze": tr.Freeze, "unfreeze": tr.Unfreeze, "abandon": tr.Abandon,
    "supersede": tr.Supersede, "reject": tr.Reject, "reopen": tr.Reopen, "move": tr.Move,
}  # fmt: skip
"""The engine's event for each of the model's event names; arguments in the same order."""


def to_engine(event: ModelEvent) -> tr.Event:
    return EVENT_TYPES[event[0]](*event[1:])


REFUSED_AS: dict[str, tuple[type[Exception], ...]] = {
    NOT_FOUND: (ItemNotFound,),
    TABLE: (tr.TransitionError,),
}


def check_refusal(expected: str | None, result: object, what: str) -> None:
    """Accepted iff the model accepts; a refusal of the kind the model names."""
    if expected is None:
        assert not isinstance(result, BaseException), f"{what}: legal, but refused: {result!r}"
        return
    assert isinstance(result, PipelineError), f"{what}: illegal ({expected}), but accepted"
    if expected == BAD:
        narrower = (ItemNotFound, tr.TransitionError)
        assert not isinstance(result, narrower), f"{what}: expected {expected}, got {result!r}"
    else:
        assert isinstance(result, REFUSED_AS[expected]), f"{what}: {expected}, got {result!r}"


REASONS = st.sampled_from(["no API keys", "out of scope", "needs a design review"])
SIMPLE_EVENTS = [
    (name,)
    for name in ("start", "submit", "qa_pass", "retry_merge", "accept", "unblock", "release",
                 "freeze", "unfreeze", "reopen")
]  # fmt: skip


def events(last: int) -> st.SearchStrategy[ModelEvent]:
    """Any event of the P3 table, ``supersede … by`` naming any number ever issued or next."""
    return st.one_of(
        st.sampled_from(SIMPLE_EVENTS),
        st.sampled_from(TARGETS).map(lambda t: ("move", t)),
        st.sampled_from([0, 1, 2, None]).map(lambda limit: ("qa_fail", limit)),
        st.sampled_from([None, "3f9c2a1b7d4e"]).map(lambda commit: ("merged", commit)),
        st.tuples(st.just("merge_failed"), st.sampled_from(["conflict", "no-commits"]), REASONS),
        st.tuples(st.sampled_from(["block", "hold", "abandon", "reject"]), REASONS),
        st.integers(1, last + 1).map(lambda by: ("supersede", by)),
    )


def concrete_events(number: int, model: Model, *, all_variants: bool = False) -> list[ModelEvent]:
    """One instance of every event (``supersede`` by another live item, if any).

    ``all_variants`` adds every ``qa_fail`` limit and ``supersede`` by the item itself and by
    a number never issued, for probing refusals.
    """
    others = [n for n in sorted(model.items) if n != number][:1]
    events = [
        *SIMPLE_EVENTS,
        *(("move", t) for t in TARGETS),
        ("qa_fail", None), ("qa_fail", 0), ("merged", "3f9c2a1b7d4e"), ("merged", None),
        ("merge_failed", "conflict", "main moved"), ("block", "no API keys"),
        ("hold", "needs review"), ("abandon", "not needed"), ("reject", "out of scope"),
        *(("supersede", n) for n in others),
    ]  # fmt: skip
    if all_variants:
        events += [("qa_fail", 1), ("qa_fail", 2), ("supersede", number)]
        events += [("supersede", model.last + 1)]
    return events


# --- the machine -----------------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        self.now += 1.0
        return self.now


def typed(tables: dict[str, list[tuple[Any, ...]]]) -> dict[str, list[tuple[Any, ...]]]:
    """Every value with its type, so ``1`` and ``1.0`` differ."""
    return {
        t: [tuple((type(v).__name__, v) for v in row) for row in rows] for t, rows in tables.items()
    }


class PipelineMachine(RuleBasedStateMachine):
    """One project on a fresh database, driven by the rules below; one event loop per run.
    A fresh SQLite file, or a fresh schema of ``postgres`` when a subclass sets it (K1)."""

    postgres: Postgres | None = None

    def __init__(self) -> None:
        super().__init__()
        self.model = Model()
        self.clean = True  # every step so far passed its checks: the teardown audit may run
        self._tmp = tempfile.TemporaryDirectory(prefix="musher-r3-")
        self._loop = asyncio.new_event_loop()
        self.db: Db | None = None
        data_dir = Path(self._tmp.name)
        url = self.postgres.new_schema() if self.postgres else f"sqlite:///{data_dir}/musher.db"
        try:
            self.db = self.run(open_db(url, data_dir))
            clock = Clock()
            self.store = self.run(OpStore.open(self.db, NodeKey.generate(), clock=clock))
            self.engine = Engine(self.store, clock=clock, max_retries=MAX_RETRIES)
            origin = SystemOrigin("test", "setup")
            self.run(self.engine.ensure_project(PROJECT, "/srv/demo", origin=origin))
        except BaseException:
            self._close()
            raise

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return self._loop.run_until_complete(coro)

    async def attempt(self, coro: Coroutine[Any, Any, T]) -> T | PipelineError:
        """The engine's answer, a refusal included (anything else is a failure)."""
        try:
            return await coro
        except PipelineError as exc:
            return exc

    def engine_apply(self, number: int, event: ModelEvent) -> Coroutine[Any, Any, Changed]:
        if event == ("qa_fail", None):
            return self.engine.qa_failed(PROJECT, number, ALICE)
        return self.engine.apply(PROJECT, number, to_engine(event), ALICE)

    # --- picking numbers: mostly live items, sometimes purged or never issued ----------------

    def candidates(self) -> list[int]:
        """Every live number, the last purged one (if any) and the next, unissued one."""
        live = sorted(self.model.items)
        gone = [n for n in range(1, self.model.last + 1) if n not in self.model.items][-1:]
        return [*live, *gone, self.model.last + 1]

    def number(self, data: st.DataObject, label: str = "number") -> int:
        return data.draw(st.sampled_from(self.candidates()), label=label)

    def numbers(self, data: st.DataObject, label: str) -> tuple[int, ...]:
        some = st.lists(st.sampled_from(self.candidates()), unique=True, max_size=3)
        return tuple(data.draw(some, label=label))

    # --- rules -------------------------------------------------------------------------------

    @initialize(count=st.integers(1, 4))
    def backlog(self, count: int) -> None:
        self.clean = False
        for _ in range(count):
            created = self.run(self.engine.create(PROJECT, ItemKind.STORY, "story", ALICE))
            assert created.item.number == self.model.create(()).number

    @precondition(lambda self: len(self.model.items) < ROOMY)
    @rule(data=st.data(), kind=st.sampled_from(ItemKind))
    def create(self, data: st.DataObject, kind: ItemKind) -> None:
        self.clean = False
        deps = self.numbers(data, "depends_on")
        title = f"item after #{self.model.last}"
        result = self.run(self.attempt(self.engine.create(PROJECT, kind, title, ALICE, deps)))
        expected = self.model.create(deps)
        check_refusal(expected.refusal, result, f"create --depends {deps}")
        if expected.refusal is None:
            assert not isinstance(result, PipelineError)
            assert result.item.number == expected.number, "numbers are issued last + 1 (P5)"
            assert len(result.warnings) == expected.warnings, result.warnings

    @rule(data=st.data())
    def apply_any_event(self, data: st.DataObject) -> None:
        self.clean = False
        number = self.number(data)
        event = data.draw(events(self.model.last), label="event")
        self._apply(number, event)

    @precondition(lambda self: bool(self.model.items))
    @rule(data=st.data(), goal=st.sampled_from(sorted(GOALS)))
    def drive_then_probe(self, data: st.DataObject, goal: str) -> None:
        """Take a live item to ``goal`` by the shortest path the model knows, then probe it.

        The engine must accept every step of the path; then, there, it must refuse every
        event the model refuses (a refusal changes nothing, so all of them are tried), accept
        one event the model accepts, and agree on up to two arbitrary ones. So every row and
        every refusal of the table is exercised, not only those near Backlog.
        """
        self.clean = False
        number = data.draw(st.sampled_from(sorted(self.model.items)), label="number")
        for event in self.path(number, GOALS[goal]):
            self._apply(number, event)
        accepted = []
        for event in concrete_events(number, self.model, all_variants=True):
            if copy.deepcopy(self.model).apply(number, event).refusal is None:
                accepted.append(event)
            else:
                self._apply(number, event)
        if accepted:
            self._apply(number, data.draw(st.sampled_from(accepted), label="accepted event"))
        for event in data.draw(st.lists(events(self.model.last), max_size=2), label="events"):
            self._apply(number, event)

    def path(self, number: int, goal: Goal) -> list[ModelEvent]:
        """The fewest events that take ``number`` where ``goal`` holds (none if it cannot)."""
        item = self.model.items[number]
        events = concrete_events(number, self.model)
        start = (item.stage, item.retries)
        todo: deque[tuple[ModelStage, int]] = deque([start])
        came: dict[tuple[ModelStage, int], tuple[Any, ModelEvent] | None] = {start: None}
        while todo:
            state = todo.popleft()
            if goal(*state):
                steps = []
                while (back := came[state]) is not None:
                    state, event = back
                    steps.append(event)
                return steps[::-1]
            for event in events:
                after = next_stage(*state, event)
                if after is not None and after not in came:
                    came[after] = (state, event)
                    todo.append(after)
        return []

    def _apply(self, number: int, event: ModelEvent) -> None:
        result = self.run(self.attempt(self.engine_apply(number, event)))
        expected = self.model.apply(number, event)
        check_refusal(expected.refusal, result, f"#{number} {event}")

    @rule(data=st.data(), first=st.sampled_from(TARGETS), second=st.sampled_from(TARGETS))
    def concurrent_moves(self, data: st.DataObject, first: str, second: str) -> None:
        """Two moves of one item at once: the outcome is one of the two serial orders."""
        self.clean = False
        number = self.number(data)
        events = [("move", first), ("move", second)]

        async def both() -> list[object]:
            coros = [self.attempt(self.engine_apply(number, e)) for e in events]
            return await asyncio.gather(*coros, return_exceptions=True)

        results = self.run(both())
        seen = self.run(self.engine.find(PROJECT, number))
        fits = []
        for order in ((0, 1), (1, 0)):
            model = copy.deepcopy(self.model)
            outcomes = {i: model.apply(number, events[i]) for i in order}
            accepted = [outcomes[i].refusal is None for i in (0, 1)]
            if accepted == [not isinstance(r, BaseException) for r in results] and agrees(
                model.items.get(number), seen
            ):
                fits.append((model, outcomes))
        assert fits, f"#{number} {events} → {results!r}, {seen!r}: no serial order gives that"
        self.model, outcomes = fits[0]
        for i in (0, 1):
            check_refusal(outcomes[i].refusal, results[i], f"#{number} {events[i]} (racing)")

    @precondition(lambda self: len(self.model.items) < ROOMY)
    @rule()
    def concurrent_creates(self) -> None:
        """Two creations at once get the next two numbers, never one twice (P5)."""
        self.clean = False

        async def both() -> list[object]:
            coros = [self.engine.create(PROJECT, ItemKind.BUG, f"racer {i}", ALICE) for i in (1, 2)]
            return await asyncio.gather(*coros, return_exceptions=True)

        results = self.run(both())
        issued = [self.model.create(()).number for _ in results]
        numbers = sorted(r.item.number for r in results if isinstance(r, Created))
        assert numbers == issued, f"racing creations got {results!r}, not #{issued}"

    @rule(data=st.data())
    def set_depends(self, data: st.DataObject) -> None:
        self.clean = False
        number = self.number(data)
        deps = self.numbers(data, "depends_on")
        result = self.run(self.attempt(self.engine.set_depends(PROJECT, number, deps, ALICE)))
        expected = self.model.set_depends(number, deps)
        check_refusal(expected.refusal, result, f"depends #{number} {deps}")
        if expected.refusal is None:
            assert not isinstance(result, PipelineError)
            assert len(result.warnings) == expected.warnings, result.warnings

    @precondition(lambda self: any(self._live_deps(n) for n in self.model.items))
    @rule(data=st.data())
    def close_a_cycle(self, data: st.DataObject) -> None:
        """Make an item that ``start`` waits for (directly or not) wait for ``start``."""
        self.clean = False
        starts = [n for n in sorted(self.model.items) if self._live_deps(n)]
        chain = [data.draw(st.sampled_from(starts), label="start")]
        while more := [d for d in self._live_deps(chain[-1]) if d not in chain]:
            chain.append(data.draw(st.sampled_from(more), label="then"))
            if data.draw(st.booleans(), label="stop here"):
                break
        number, deps = chain[-1], (chain[0],)
        result = self.run(self.attempt(self.engine.set_depends(PROJECT, number, deps, ALICE)))
        expected = self.model.set_depends(number, deps)
        assert expected.refusal == BAD, f"the model missed the cycle {chain}"
        check_refusal(expected.refusal, result, f"depends #{number} {deps} (chain {chain})")

    def _live_deps(self, number: int) -> list[int]:
        return [d for d in self.model.items[number].deps if d in self.model.items]

    @rule(data=st.data())
    def purge(self, data: st.DataObject) -> None:
        self.clean = False
        number = self.number(data)
        result = self.run(self.attempt(self.engine.purge(PROJECT, number, ALICE)))
        expected = self.model.purge(number)
        check_refusal(expected.refusal, result, f"purge #{number}")
        if expected.refusal is None:
            assert result == list(expected.layers), result

    # --- after every step --------------------------------------------------------------------

    @invariant()
    def engine_matches_model(self) -> None:
        items = self.run(self.engine.items(PROJECT))
        seen = {item.number: item for item in items}
        assert sorted(seen) == sorted(self.model.items), "live items differ"
        for number, item in seen.items():
            assert agrees(self.model.items[number], item), (number, self.model.items[number], item)
        assert self.run(self.store.next_number(PROJECT)) == self.model.last + 1, "number reused"
        assert self.run(self._op_count()) == self.model.ops, "an op too many or too few"
        self.clean = True

    @invariant()
    def board_view_matches_items(self) -> None:
        """``status``'s cut of the board (from ``items.col``) equals the cut of every item."""
        items = self.run(self.engine.items(PROJECT))
        for per_column in (1, 2):
            view = self.run(self.store.board_view(PROJECT, tuple(Column), per_column, NEWEST))
            assert view == board_view(items, tuple(Column), per_column, NEWEST), per_column

    async def _op_count(self) -> int:
        assert self.db is not None
        return int((await self.db.read("SELECT COUNT(*) FROM ops"))[0][0])

    # --- at the end --------------------------------------------------------------------------

    def teardown(self) -> None:
        try:
            if self.clean:
                self.run(self._audit())
        finally:
            self._close()

    async def _audit(self) -> None:
        assert self.db is not None
        report = await verify(self.db)
        assert report.ok, str(report)
        scratch = await Database.open(Path(self._tmp.name) / "replay.db")
        try:
            assert await replay_into(self.db, scratch) == self.model.ops
            replayed = await scratch.write(read_tables)
        finally:
            await scratch.aclose()
        live = await self.db.write(read_tables)
        assert typed(replayed) == typed(live), "replay does not reproduce the tables"

    def _close(self) -> None:
        try:
            if self.db is not None:
                self.run(self.db.aclose())
            self.run(self._loop.shutdown_asyncgens())
            self.run(self._loop.shutdown_default_executor())
        finally:
            self._loop.close()
            self._tmp.cleanup()


def agrees(model: ModelItem | None, item: Item | None) -> bool:
    """The engine's item has the model's stage, retries and dependencies (or both are gone)."""
    if model is None or item is None:
        return model is None and item is None
    return (
        same(model.stage, observe(item.stage))
        and model.retries == item.retries
        and model.deps == item.depends_on
    )


def _settings(examples: int) -> settings:
    return settings(
        max_examples=examples,
        stateful_step_count=30,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow],
    )


@pytest.mark.timeout(300)  # room for hypothesis to shrink a failure before reporting it
def test_engine_refuses_exactly_what_the_model_refuses_and_never_diverges() -> None:
    run_state_machine_as_test(PipelineMachine, settings=_settings(60))


@pytest.mark.timeout(300)
def test_the_engine_and_its_replay_agree_on_postgresql_too(postgres: Postgres) -> None:
    machine = type("PgPipelineMachine", (PipelineMachine,), {"postgres": postgres})
    run_state_machine_as_test(machine, settings=_settings(10))


@pytest.mark.slow
@pytest.mark.timeout(3600)
def test_engine_matches_the_model_over_2000_runs() -> None:
    run_state_machine_as_test(PipelineMachine, settings=_settings(2000))
