"""Dependency promotion (P4): Backlog items start when their dependencies are done."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from pipeline.deps import DependencyPromoter
from pipeline.model import Archived, Backlog, Coding, Done, SystemOrigin
from pipeline.transitions import Abandon, Accept, Move
from tests.unit.pipeline_env import ALICE, PROJECT, PipelineEnv, pipeline_env


class Deps:
    """A promoter fed with every event the engine commits, as the bus would."""

    def __init__(self, env: PipelineEnv) -> None:
        self.env = env
        self.warnings: list[tuple[str, str]] = []
        self.promoter = DependencyPromoter(env.engine, lambda p, t: self.warnings.append((p, t)))
        self._fed = 0

    async def settle(self) -> None:
        """Hand every event not yet handled to the promoter (its own included)."""
        while self._fed < len(self.env.events):
            event = self.env.events[self._fed]
            self._fed += 1
            await self.promoter.handle(event)

    async def move(self, number: int, stage: str) -> None:
        await self.env.engine.apply(PROJECT, number, Move(stage), ALICE)
        await self.settle()

    async def stage(self, number: int) -> object:
        item = await self.env.engine.find(PROJECT, number)
        assert item is not None
        return item.stage


@pytest.fixture
async def deps(tmp_path: Path) -> AsyncIterator[Deps]:
    async with pipeline_env(tmp_path) as env:
        yield Deps(env)


async def test_an_item_starts_when_every_dependency_is_done_or_archived(deps: Deps) -> None:
    env = deps.env
    for title in ("API", "Schema"):
        await env.story(title)
    await env.story("Client", depends_on=(1, 2))
    await env.story("No deps")
    await deps.settle()

    for stage in ("coding", "done"):
        await deps.move(1, stage)
    assert await deps.stage(3) == Backlog()  # #2 is not done yet

    for stage in ("coding", "done"):
        await deps.move(2, stage)
    await env.engine.apply(PROJECT, 2, Accept(), ALICE)  # archived counts as done too
    await deps.settle()
    assert await deps.stage(3) == Coding()
    assert await deps.stage(4) == Backlog()  # no depends_on: waits for a human
    [promotion] = [e for e in env.events if e.number == 3 and e.origin != ALICE]
    assert promotion.origin == SystemOrigin("deps", "dependencies met")
    assert deps.warnings == []


async def test_a_dependency_that_will_never_be_done_warns_and_promotes_nothing(
    deps: Deps,
) -> None:
    env = deps.env
    await env.story("Payments")
    await env.story("Checkout", depends_on=(1,))
    await env.story("Receipts", depends_on=(1,))
    await env.engine.apply(PROJECT, 1, Abandon(), ALICE)
    await deps.settle()

    assert deps.warnings == [
        (PROJECT, f"⚠️ #{n} {title} depends on #1 Payments, which is abandoned: it will not"
                  f" start on its own (`depends {n} …` changes what it waits for).")
        for n, title in ((2, "Checkout"), (3, "Receipts"))
    ]  # fmt: skip
    assert await deps.stage(2) == await deps.stage(3) == Backlog()
    await deps.promoter.reconcile()
    assert len(deps.warnings) == 2  # reconcile never repeats a warning
    assert await deps.stage(2) == Backlog()


async def test_a_purged_dependency_warns_and_is_never_met(deps: Deps) -> None:
    env = deps.env
    await env.story("Spike")
    await env.story("Build", depends_on=(1,))
    await env.engine.purge(PROJECT, 1, ALICE)
    await deps.settle()
    assert [text for _, text in deps.warnings] == [
        "⚠️ #2 Build depends on #1 Spike, which is purged: it will not start on its own"
        " (`depends 2 …` changes what it waits for)."
    ]
    await deps.promoter.reconcile()
    assert await deps.stage(2) == Backlog()


async def test_reconcile_promotes_what_was_missed_and_is_idempotent(deps: Deps) -> None:
    env = deps.env
    await env.story("Base")
    await env.story("Top", depends_on=(1,))
    for stage in ("coding", "done"):  # while the promoter was not listening
        await env.engine.apply(PROJECT, 1, Move(stage), ALICE)
    assert await deps.stage(2) == Backlog()

    await deps.promoter.reconcile()
    assert await deps.stage(2) == Coding()
    ops = await env.ops()
    await deps.promoter.reconcile()
    await deps.settle()  # the events it already acted on change nothing either
    assert await env.ops() == ops


async def test_naming_done_dependencies_promotes_at_once(deps: Deps) -> None:
    env = deps.env
    await env.story("Done already")
    for stage in ("coding", "done"):
        await deps.move(1, stage)
    await env.story("Follow-up", depends_on=(1,))  # created with its deps met
    await env.story("Later")
    await env.engine.set_depends(PROJECT, 3, (1,), ALICE)  # deps changed to met ones
    await deps.settle()
    assert await deps.stage(2) == await deps.stage(3) == Coding()
    assert await deps.stage(1) == Done(None)


async def test_a_dependent_that_moved_meanwhile_is_left_alone(deps: Deps) -> None:
    env = deps.env
    await env.story("Base")
    await env.story("Top", depends_on=(1,))
    await deps.settle()
    await env.engine.apply(PROJECT, 2, Move("coding"), ALICE)  # a human started it first
    for stage in ("coding", "done"):
        await deps.move(1, stage)
    await env.engine.apply(PROJECT, 1, Accept(), ALICE)
    await deps.settle()
    assert await deps.stage(2) == Coding()
    assert await deps.stage(1) == Archived("completed")
    assert [e.origin for e in env.events if e.number == 2][-1] == ALICE
