"""The pipeline engine over a real op store: lookup, create, apply, depends, purge, listeners."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.db import Database
from pipeline.engine import (
    Engine,
    ItemChanged,
    ItemCreated,
    ItemNotFound,
    ItemPurged,
    PipelineEvent,
    ProjectNotFound,
    project_slug,
)
from pipeline.errors import PipelineError
from pipeline.keys import NodeKey
from pipeline.model import (
    Abandoned,
    Archived,
    Backlog,
    Blocked,
    Coding,
    Done,
    Frozen,
    ItemKind,
    Rejected,
    Superseded,
    SystemOrigin,
    UserOrigin,
)
from pipeline.ops import AddTimer
from pipeline.store import OpStore
from pipeline.transitions import (
    Abandon,
    Accept,
    Freeze,
    Move,
    Reject,
    Reopen,
    Supersede,
    TransitionError,
    Unblock,
    Unfreeze,
)

ALICE = UserOrigin("web", "alice", "lobby")
BOB = UserOrigin("slack", "bob", "C1")
STORY = ItemKind.STORY


class Clock:
    """A settable clock shared by the store and the engine."""

    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        self.now += 1.0
        return self.now


class Env:
    def __init__(self, db: Database, store: OpStore, engine: Engine, key: NodeKey) -> None:
        self.db, self.store, self.engine, self.key = db, store, engine, key

    async def ops(self) -> int:
        return int((await self.db.read("SELECT COUNT(*) FROM ops"))[0][0])

    async def reopen(self) -> None:
        """Close the database and open it again, as a restarted daemon would."""
        await self.db.aclose()
        self.db = await Database.open(self.db.path)
        self.store = await OpStore.open(self.db, self.key, clock=Clock())
        self.engine = Engine(self.store, clock=Clock())


@pytest.fixture
async def env(tmp_path: Path) -> AsyncIterator[Env]:
    db = await Database.open(tmp_path / "musher.db")
    key = NodeKey.generate()
    clock = Clock()
    store = await OpStore.open(db, key, clock=clock)
    engine = Engine(store, clock=clock, max_retries=1)
    await engine.ensure_project("demo", "/srv/demo", origin=SystemOrigin("daemon", "startup"))
    e = Env(db, store, engine, key)
    yield e
    await e.db.aclose()


async def stories(engine: Engine, n: int) -> None:
    for i in range(n):
        await engine.create("demo", STORY, f"story {i + 1}", ALICE)


# --- projects ------------------------------------------------------------------------------


async def test_ensure_project_is_idempotent(env: Env) -> None:
    ops = await env.ops()
    record = await env.engine.ensure_project("demo", "/elsewhere", origin=ALICE)
    assert (record.name, record.path, record.base_branch, record.timezone) == (
        "demo",
        "/srv/demo",
        "main",
        "UTC",
    )
    assert await env.ops() == ops
    assert [p.name for p in await env.engine.projects()] == ["demo"]
    with pytest.raises(ProjectNotFound, match=r"No project 'nope'\. Projects: demo\."):
        await env.engine.project("nope")


@pytest.mark.parametrize(
    ("text", "slug"),
    [("My App", "my-app"), ("musher", "musher"), ("--x__y--", "x-y"), ("ÄÖÜ", "default"),
     ("a" * 80, "a" * 63), ("Über-Project 2", "ber-project-2")],
)  # fmt: skip
def test_project_slug_is_always_a_valid_name(text: str, slug: str) -> None:
    assert project_slug(text) == slug


async def test_rooms_use_their_switch_else_the_default(env: Env) -> None:
    engine = env.engine
    with pytest.raises(ProjectNotFound, match="No project is set up yet"):
        await engine.room_project("web:lobby")
    engine.default_project = "demo"
    await engine.ensure_project("other", "/srv/other", origin=ALICE)
    assert await engine.room_project("web:lobby") == "demo"
    with pytest.raises(ProjectNotFound):
        await engine.switch("web:lobby", "nope", ALICE)
    await engine.switch("web:lobby", "other", ALICE)
    assert await engine.room_project("web:lobby") == "other"
    assert await engine.room_project("web:elsewhere") == "demo"


# --- create and lookup ---------------------------------------------------------------------


async def test_create_then_lookup_through_the_one_helper(env: Env) -> None:
    created = await env.engine.create("demo", ItemKind.BUG, "  Crash on save ", BOB)
    item = created.item
    assert (item.number, item.kind, item.title, item.stage, item.origin) == (
        1,
        ItemKind.BUG,
        "Crash on save",
        Backlog(),
        BOB,
    )
    assert created.warnings == ()
    assert await env.engine.lookup("demo", 1) == item
    with pytest.raises(ItemNotFound) as err:
        await env.engine.lookup("demo", 7)
    assert str(err.value) == "No item #7 in demo."


async def test_bad_creations_write_nothing(env: Env) -> None:
    engine = env.engine
    await stories(engine, 1)
    ops = await env.ops()
    with pytest.raises(ProjectNotFound):
        await engine.create("nope", STORY, "x", ALICE)
    with pytest.raises(ItemNotFound, match=r"No item #4 in demo\."):
        await engine.create("demo", STORY, "x", ALICE, depends_on=[1, 4])
    with pytest.raises(ItemNotFound):
        await engine.create("demo", STORY, "x", ALICE, epic=9)
    with pytest.raises(PipelineError, match=r"#1 is a story, not an epic\."):
        await engine.create("demo", STORY, "x", ALICE, epic=1)
    with pytest.raises(PipelineError, match="single line"):
        await engine.create("demo", STORY, "two\nlines", ALICE)
    assert await env.ops() == ops
    assert (await engine.create("demo", STORY, "next", ALICE)).item.number == 2


async def test_epics_and_dependencies_are_recorded(env: Env) -> None:
    engine = env.engine
    await engine.create("demo", ItemKind.EPIC, "Auth", ALICE)
    await stories(engine, 1)
    item = (await engine.create("demo", STORY, "x", ALICE, depends_on=[2, 1, 2], epic=1)).item
    assert (item.depends_on, item.epic) == ((2, 1), 1)


async def test_never_done_dependencies_warn_lesson_503(env: Env) -> None:
    engine = env.engine
    await stories(engine, 4)
    await engine.apply("demo", 1, Abandon(), ALICE)
    await engine.apply("demo", 2, Supersede(4), ALICE)
    await engine.apply("demo", 3, Reject("out of scope"), ALICE)
    created = await engine.create("demo", STORY, "x", ALICE, depends_on=[1, 2, 3, 4])
    assert created.warnings == tuple(
        f"⚠️ #{n} story {n} is {stage}: it will never be done, so this dependency will never"
        " be met on its own."
        for n, stage in ((1, "abandoned"), (2, "superseded"), (3, "rejected"))
    )
    changed = await engine.set_depends("demo", 4, [3], ALICE)
    assert len(changed.warnings) == 1 and "#3 story 3 is rejected" in changed.warnings[0]


# --- transitions ---------------------------------------------------------------------------


async def test_apply_writes_one_op_and_returns_before_and_after(env: Env) -> None:
    engine = env.engine
    await stories(engine, 1)
    ops = await env.ops()
    changed = await engine.apply("demo", 1, Move("coding"), BOB)
    assert (changed.before.stage, changed.after.stage) == (Backlog(), Coding())
    assert await env.ops() == ops + 1
    assert await engine.lookup("demo", 1) == changed.after


async def test_refusals_write_nothing(env: Env) -> None:
    engine = env.engine
    await stories(engine, 1)
    ops = await env.ops()
    with pytest.raises(TransitionError) as err:
        await engine.apply("demo", 1, Move("done"), ALICE)
    assert str(err.value) == "#1 is in backlog; cannot move to done. It can go to: coding."
    with pytest.raises(TransitionError, match="cannot accept"):
        await engine.apply("demo", 1, Accept(), ALICE)
    with pytest.raises(ItemNotFound, match=r"No item #9 in demo\."):
        await engine.apply("demo", 1, Supersede(9), ALICE)
    with pytest.raises(ItemNotFound):
        await engine.apply("demo", 9, Move("coding"), ALICE)
    with pytest.raises(PipelineError, match="superseded by itself"):
        await engine.apply("demo", 1, Supersede(1), ALICE)
    assert await env.ops() == ops
    assert (await engine.lookup("demo", 1)).stage == Backlog()


async def test_freeze_keeps_the_exact_stage_lesson_1105(env: Env) -> None:
    engine = env.engine
    await stories(engine, 1)
    assert (await engine.apply("demo", 1, Freeze(), ALICE)).after.stage == Frozen(Backlog())
    assert (await engine.apply("demo", 1, Unfreeze(), ALICE)).after.stage == Backlog()


async def test_qa_failures_count_retries_then_block(env: Env) -> None:
    engine = env.engine  # max_retries=1
    await stories(engine, 1)
    for target in ("coding", "qa"):
        await engine.apply("demo", 1, Move(target), ALICE)
    first = await engine.qa_failed("demo", 1, SystemOrigin("gates", "tests"), "tests failed")
    assert (first.after.stage, first.after.retries) == (Coding(), 1)
    await engine.apply("demo", 1, Move("qa"), ALICE)
    second = await engine.qa_failed("demo", 1, SystemOrigin("gates", "tests"), "again")
    assert isinstance(second.after.stage, Blocked) and second.after.retries == 2
    back = await engine.apply("demo", 1, Unblock(), ALICE)
    assert (back.after.stage, back.after.retries) == (Backlog(), 0)
    assert await engine.lookup("demo", 1) == back.after


async def test_concurrent_moves_cannot_both_pass_the_same_check(env: Env) -> None:
    await stories(env.engine, 1)
    results = await asyncio.gather(
        *(env.engine.apply("demo", 1, Move("coding"), ALICE) for _ in range(5)),
        return_exceptions=True,
    )
    assert sum(not isinstance(r, BaseException) for r in results) == 1
    assert all(isinstance(r, TransitionError) for r in results if isinstance(r, BaseException))


# --- dependencies --------------------------------------------------------------------------


async def test_set_depends_replaces_clears_and_refuses_bad_graphs(env: Env) -> None:
    engine = env.engine
    await stories(engine, 3)
    assert (await engine.set_depends("demo", 3, [1, 2], ALICE)).after.depends_on == (1, 2)
    ops = await env.ops()
    unchanged = await engine.set_depends("demo", 3, [1, 2], ALICE)
    assert unchanged.before == unchanged.after and await env.ops() == ops
    with pytest.raises(PipelineError, match="cannot depend on itself"):
        await engine.set_depends("demo", 3, [3], ALICE)
    with pytest.raises(PipelineError, match="would make a cycle"):
        await engine.set_depends("demo", 1, [3], ALICE)
    await engine.set_depends("demo", 2, [1], ALICE)
    with pytest.raises(PipelineError, match="would make a cycle"):
        await engine.set_depends("demo", 1, [2], ALICE)  # 1 → 2 → 1
    with pytest.raises(ItemNotFound):
        await engine.set_depends("demo", 3, [8], ALICE)
    assert await env.ops() == ops + 1
    assert (await engine.set_depends("demo", 3, [], ALICE)).after.depends_on == ()
    assert (await engine.lookup("demo", 3)).depends_on == ()


# --- purge ---------------------------------------------------------------------------------


async def test_purge_clears_layers_is_idempotent_and_numbers_stay_used(env: Env) -> None:
    await stories(env.engine, 2)
    await env.store.append(AddTimer("t1", "demo", 2, 2e9, {"event": "start"}), ALICE)
    assert await env.engine.purge("demo", 2, ALICE) == ["item row", "1 timer"]
    ops = await env.ops()
    assert await env.engine.purge("demo", 2, ALICE) == []
    assert await env.ops() == ops
    with pytest.raises(ItemNotFound, match=r"No item #3 in demo\."):
        await env.engine.purge("demo", 3, ALICE)

    await env.reopen()
    with pytest.raises(ItemNotFound, match=r"No item #2 in demo\."):
        await env.engine.lookup("demo", 2)
    assert await env.engine.purge("demo", 2, ALICE) == []
    assert (await env.engine.create("demo", STORY, "after", ALICE)).item.number == 3
    assert [i.number for i in await env.engine.items("demo")] == [1, 3]


# --- history -------------------------------------------------------------------------------


async def test_history_says_who_did_what_and_when(env: Env) -> None:
    engine = env.engine
    await stories(engine, 2)
    await engine.apply("demo", 1, Move("coding"), BOB)
    await engine.set_depends("demo", 1, [2], ALICE)
    await engine.apply("demo", 1, Move("done"), BOB)
    await engine.apply("demo", 1, Accept(), ALICE)
    entries = await engine.history("demo", 1)
    assert [(e.kind, e.origin, e.summary) for e in entries] == [
        ("item.create", ALICE, "created story 'story 1' in backlog"),
        ("item.update", BOB, "stage backlog → coding"),
        ("item.update", ALICE, "depends_on nothing → #2"),
        ("item.update", BOB, "stage coding → done"),
        ("item.update", ALICE, "stage done → archived"),
    ]
    assert [e.ts for e in entries] == sorted(e.ts for e in entries)
    assert (await engine.lookup("demo", 1)).stage == Archived()
    await engine.purge("demo", 2, ALICE)
    assert [e.summary for e in await engine.history("demo", 2)][-1] == "purged"


# --- listeners -----------------------------------------------------------------------------


async def test_listeners_hear_each_commit_once(env: Env) -> None:
    engine = env.engine
    heard: list[PipelineEvent] = []
    unsubscribe = engine.subscribe(heard.append)
    await stories(engine, 2)
    await engine.apply("demo", 1, Move("coding"), BOB)
    with pytest.raises(TransitionError):
        await engine.apply("demo", 1, Move("coding"), BOB)
    await engine.set_depends("demo", 2, [1], ALICE)
    await engine.set_depends("demo", 2, [1], ALICE)  # no change, no event
    await engine.apply("demo", 1, Move("done"), BOB)
    await engine.purge("demo", 2, ALICE)
    await engine.purge("demo", 2, ALICE)  # already gone, no event
    kinds = [type(e) for e in heard]
    assert kinds == [ItemCreated, ItemCreated, ItemChanged, ItemChanged, ItemChanged, ItemPurged]
    moved = heard[2]
    assert isinstance(moved, ItemChanged)
    assert (moved.project, moved.number, moved.title) == ("demo", 1, "story 1")
    assert (moved.from_stage, moved.to_stage, moved.origin) == (Backlog(), Coding(), BOB)
    assert moved.ts == (await engine.history("demo", 1))[1].ts
    done = heard[4]
    assert isinstance(done, ItemChanged) and done.to_stage == Done()
    purged = heard[5]
    assert isinstance(purged, ItemPurged) and purged.layers == ("item row",)

    unsubscribe()
    await stories(engine, 1)
    assert len(heard) == 6


async def test_a_failing_listener_reaches_neither_caller_nor_others(
    env: Env, caplog: pytest.LogCaptureFixture
) -> None:
    heard: list[PipelineEvent] = []

    def broken(event: PipelineEvent) -> None:
        raise RuntimeError("listener bug")

    env.engine.subscribe(broken)
    env.engine.subscribe(heard.append)
    with caplog.at_level(logging.ERROR, logger="musher.engine"):
        created = await env.engine.create("demo", STORY, "x", ALICE)
        await env.engine.apply("demo", 1, Abandon(), ALICE)
    assert created.item.number == 1
    assert [type(e) for e in heard] == [ItemCreated, ItemChanged]
    assert (await env.engine.lookup("demo", 1)).stage == Abandoned("no reason given")
    failures = [r for r in caplog.records if r.exc_info and "listener bug" in str(r.exc_info[1])]
    assert len(failures) == 2


async def test_supersede_reject_and_reopen(env: Env) -> None:
    engine = env.engine
    await stories(engine, 2)
    assert (await engine.apply("demo", 1, Supersede(2), ALICE)).after.stage == Superseded(2)
    await engine.apply("demo", 2, Reject("no"), ALICE)
    assert (await engine.lookup("demo", 2)).stage == Rejected("no")
    reopened = await engine.apply("demo", 1, Reopen(), BOB)
    assert (reopened.before.stage, reopened.after.stage) == (Superseded(2), Backlog())
