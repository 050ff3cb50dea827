"""The agent execution state ops (A2): one claim per item, replayed exactly by audit verify."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline import audit
from pipeline.agent_ops import AgentProgress, ClaimAgent, ClearAgent, EndAgent
from pipeline.errors import PipelineError
from pipeline.model import AgentOrigin
from pipeline.ops import CHANGES
from pipeline.transitions import Abandon
from tests.unit.pipeline_env import ALICE, PROJECT, pipeline_env

AGENT = AgentOrigin("coder", "coder")


async def test_an_item_is_claimed_once_until_its_run_ends(tmp_path: Path) -> None:
    async with pipeline_env(tmp_path) as env:
        item = await env.story("Cart")
        await env.store.append(ClaimAgent(PROJECT, item.number, "coder", "coder", "node-a"), AGENT)

        with pytest.raises(PipelineError, match="already has an agent"):
            await env.store.append(
                ClaimAgent(PROJECT, item.number, "coder", "coder", "node-b"), AGENT
            )
        await env.store.append(AgentProgress(PROJECT, 1, {"pid": 42, "session_id": "s1"}), AGENT)
        resumed = ClaimAgent(PROJECT, 1, "coder", "coder", "node-a", 0, resume=True)
        await env.store.append(resumed, AGENT)
        run = await env.store.agent_run(PROJECT, 1)
        assert run is not None and (run.state, run.session_id, run.pid) == ("pending", "s1", None)

        await env.store.append(
            EndAgent(PROJECT, 1, "failed", 1, "gate failed", None, 1, 0.5), AGENT
        )
        await env.store.append(ClaimAgent(PROJECT, 1, "coder", "coder", "node-b", 1), AGENT)
        await env.store.append(EndAgent(PROJECT, 1, "completed", 0, "", None, 1, 0.25), AGENT)

        run = await env.store.agent_run(PROJECT, 1)
        assert run is not None
        assert (run.state, run.node, run.attempts, run.cost_usd) == ("completed", "node-b", 1, 0.75)
        assert (await audit.verify(env.db)).ok


async def test_claims_are_refused_for_missing_or_finished_items_and_purge_clears_the_row(
    tmp_path: Path,
) -> None:
    async with pipeline_env(tmp_path) as env:
        with pytest.raises(PipelineError, match="no item #9"):
            await env.store.append(ClaimAgent(PROJECT, 9, "coder", "coder", "n"), AGENT)
        item = await env.story("Cart")
        await env.store.append(ClaimAgent(PROJECT, 1, "coder", "coder", "n"), AGENT)

        assert await env.engine.purge(PROJECT, 1, ALICE) == ["item row", "agent state"]
        assert await env.store.agent_runs() == []
        other = await env.story("Till")
        await env.engine.apply(PROJECT, other.number, Abandon(), ALICE)
        with pytest.raises(PipelineError, match="finished"):
            await env.store.append(ClaimAgent(PROJECT, 2, "coder", "coder", "n"), AGENT)
        assert item.number == 1
        assert (await audit.verify(env.db)).ok


def test_agent_ops_refuse_bad_fields_and_round_trip() -> None:
    with pytest.raises(PipelineError):
        ClaimAgent(PROJECT, 1, "coder", "boss", "n")
    with pytest.raises(PipelineError):
        EndAgent(PROJECT, 1, "exploded")
    with pytest.raises(PipelineError):
        AgentProgress(PROJECT, 1, {"cost": 1})
    with pytest.raises(PipelineError, match="note"):
        AgentProgress(PROJECT, 1, {"note": "x" * 201})
    for change in (
        ClaimAgent(PROJECT, 1, "coder", "qa", "n", 2, True),
        AgentProgress(PROJECT, 1, {"turns": 3}),
        AgentProgress(PROJECT, 1, {"turns": 3, "note": "tool Bash: pytest"}, "agent:b"),
        EndAgent(PROJECT, 1, "rate_limited", None, "", 1234.5, 0, 0.0),
        ClearAgent(PROJECT, 1),
    ):
        kind = CHANGES[change.KIND]
        assert kind.from_payload(PROJECT, 1, change.to_payload()) == change
