"""One claim per item across nodes (K3), on both backends: concurrent claims from two
connections, takeover of a lapsed node's claim, and the node fencing of progress and end."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from bot.claim_ttl import release_stale
from bot.store_url import open_db
from pipeline import audit, nodes
from pipeline.agent_ops import AgentProgress, ClaimAgent, EndAgent
from pipeline.errors import PipelineError
from pipeline.keys import NodeKey
from pipeline.model import AgentOrigin, Coding, ItemKind, UserOrigin
from pipeline.ops import CreateProject
from pipeline.store import OpStore

ADMIN = UserOrigin("web", "admin", "lobby")
AGENT = AgentOrigin("coder", "coder")


def claim(node: str, **kw: object) -> ClaimAgent:
    return ClaimAgent("demo", 1, "coder", "coder", node, **kw)  # type: ignore[arg-type]


async def test_concurrent_claims_from_two_nodes_let_exactly_one_win(
    store_url: str, tmp_path: Path
) -> None:
    first, second = await open_db(store_url, tmp_path), await open_db(store_url, tmp_path)
    try:
        a = await OpStore.open(first, NodeKey.generate())
        b = await OpStore.open(second, NodeKey.generate())
        await a.append(CreateProject("demo", "/srv/demo", "main", "UTC"), ADMIN)
        for n in range(1, 9):
            await a.create_item("demo", ADMIN, kind=ItemKind.STORY, title=f"s{n}", stage=Coding())
        for n in range(1, 9):
            results = await asyncio.gather(
                a.append(ClaimAgent("demo", n, "coder", "coder", "agent:a"), AGENT),
                b.append(ClaimAgent("demo", n, "coder", "coder", "agent:b"), AGENT),
                return_exceptions=True,
            )
            assert sum(isinstance(r, PipelineError) for r in results) == 1, results
        runs = await a.agent_runs("demo")
        assert len(runs) == 8 and all(r.state == "pending" for r in runs)
        assert (await audit.verify(first)).ok
    finally:
        await first.aclose()
        await second.aclose()


async def test_a_takeover_names_the_holder_and_fences_its_late_writes(
    store_url: str, tmp_path: Path
) -> None:
    db = await open_db(store_url, tmp_path, nodes.SCHEMA)
    try:
        store = await OpStore.open(db, NodeKey.generate())
        await store.append(CreateProject("demo", "/srv/demo", "main", "UTC"), ADMIN)
        await store.create_item("demo", ADMIN, kind=ItemKind.STORY, title="s", stage=Coding())
        await store.append(claim("agent:a"), AGENT)
        await store.append(AgentProgress("demo", 1, {"pid": 7}, node="agent:a"), AGENT)

        with pytest.raises(PipelineError, match="already has an agent"):
            await store.append(claim("agent:b", resume=True), AGENT)  # resume: same node only
        with pytest.raises(PipelineError, match="already has an agent"):
            await store.append(claim("agent:b", takeover="agent:c"), AGENT)  # not the holder

        await nodes.heartbeat(db, "a" * 64, "a", "agent", 1000.0)  # a: silent since t=1000
        await nodes.heartbeat(db, "b" * 64, "b", "agent", 1100.0)
        assert await release_stale(db, store, "agent:b", 60.0, lambda: 1050.0) == []
        assert await release_stale(db, store, "agent:b", 60.0, lambda: 1100.0) == [("demo", 1)]
        assert await release_stale(db, store, "agent:c", 60.0, lambda: 1100.0) == []  # b holds

        with pytest.raises(PipelineError, match="worked by agent:b now, not agent:a"):
            await store.append(AgentProgress("demo", 1, {"turns": 3}, node="agent:a"), AGENT)
        late = EndAgent("demo", 1, "completed", 0, "", None, 0, 0.1, node="agent:a")
        with pytest.raises(PipelineError, match="worked by agent:b"):
            await store.append(late, AGENT)
        run = await store.agent_run("demo", 1)
        assert run is not None and (run.node, run.state, run.pid) == ("agent:b", "pending", None)

        await store.append(EndAgent("demo", 1, "failed", None, "stopped: by admin"), ADMIN)
        assert (await audit.verify(db)).ok
    finally:
        await db.aclose()
