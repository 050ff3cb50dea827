"""Events read back from the op log (what another daemon sees, K2) are the events the engine
told its own listeners at commit, marked remote."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from pipeline.envelope import OP_COLUMNS, op_from_row
from pipeline.events import ItemPurged, PipelineEvent
from pipeline.model import ItemKind
from pipeline.op_events import event_of
from pipeline.store import AppliedOp
from pipeline.transitions import Freeze, Move, Start
from tests.unit.pipeline_env import ALICE, BOB, PROJECT, pipeline_env


async def test_the_op_log_gives_the_engines_own_events(store_url: str, tmp_path: Path) -> None:
    async with pipeline_env(tmp_path, url=store_url) as env:
        base = await env.story("Base")
        top = await env.story("Top", depends_on=(base.number,))
        await env.engine.apply(PROJECT, base.number, Start(), ALICE)
        await env.engine.apply(PROJECT, base.number, Freeze(), BOB)
        await env.engine.set_depends(PROJECT, top.number, (), ALICE)
        await env.engine.create(PROJECT, ItemKind.BUG, "Crash", BOB)
        await env.engine.apply(PROJECT, 3, Move("coding"), ALICE)
        await env.engine.purge(PROJECT, top.number, BOB)

        rows = await env.db.read(f"SELECT {OP_COLUMNS} FROM ops ORDER BY rowid")
        log = [AppliedOp(op, op.decode(), ()) for op in map(op_from_row, rows)]
        seen: list[PipelineEvent] = []
        for i, applied in enumerate(log):
            earlier = [a for a in log[:i] if a.op.item == applied.op.item]
            event = event_of(applied, earlier)
            if event is not None:
                seen.append(event)

    def as_remote(event: PipelineEvent) -> PipelineEvent:
        if isinstance(event, ItemPurged):
            event = dataclasses.replace(event, layers=())  # only the purging daemon knows
        return dataclasses.replace(event, remote=True)

    assert len(env.events) == 8
    assert seen == [as_remote(event) for event in env.events]
