"""Rooms told of build-node work (issue 15): two daemons on one real PostgreSQL and a build
node's ops; whichever daemon holds ``leader:notifier`` tells the room, each line once, and a
daemon that lost the lease tells nothing."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path

import pytest

from bot.announcer import Announcer
from bot.feed import RoomFeed
from bot.followers import Followers
from bot.journal import Journal
from bot.metrics import Metrics
from bot.outbox import Outbox
from pipeline import leases, nodes
from pipeline.agent_lines import AgentChange, agent_line
from pipeline.agent_ops import AgentProgress, ClaimAgent, EndAgent
from pipeline.agent_rows import AgentRun
from pipeline.engine import Engine
from pipeline.keys import load_or_create
from pipeline.leases import Lease, LeaseLost
from pipeline.model import AgentOrigin
from pipeline.node_ops import TrustNode
from pipeline.store import OpStore
from pipeline.transitions import Start, Submit
from tests.fakes.postgres import Postgres
from tests.unit.pipeline_env import ALICE, PROJECT, PipelineEnv, pipeline_env

ROOM = "web:lobby"
LEASE = "leader:notifier"
CODER = AgentOrigin("coder", "coder")


@asynccontextmanager
async def daemon(url: str, directory: Path) -> AsyncIterator[tuple[PipelineEnv, Announcer]]:
    """One daemon's store and announcer; its room ``web:lobby`` follows the project."""
    await asyncio.to_thread(directory.mkdir)
    async with AsyncExitStack() as stack:
        env = await stack.enter_async_context(pipeline_env(directory, url=url))
        journal = Journal(env.db)
        followers = Followers(env.engine, journal)
        followers.note(ROOM, PROJECT)
        outbox = Outbox(journal, RoomFeed(), Metrics(), "musher")
        yield env, Announcer(env.db, env.store, followers, outbox, claim_ttl_s=120, window_s=0)


async def lead(env: PipelineEnv, announcer: Announcer) -> Lease:
    lease = await leases.acquire(env.db, LEASE, env.store.author, 15, time.time())
    assert lease is not None
    announcer.lease = lambda: lease
    return lease


async def told(env: PipelineEnv) -> list[str]:
    entries = await Journal(env.db).history(ROOM)
    return [line for e in entries if e.role == "bot" for line in e.text.splitlines()]


async def test_the_lease_holder_tells_a_build_nodes_work_once_across_a_failover(
    postgres: Postgres, tmp_path: Path
) -> None:
    url = postgres.new_database()
    async with (
        daemon(url, tmp_path / "a") as (a, tell_a),
        daemon(url, tmp_path / "b") as (b, tell_b),
    ):
        key = load_or_create(tmp_path / "node")
        await a.store.append(TrustNode(key.public_hex), ALICE)
        assert not await tell_a.build_nodes()  # no build node: the lease is not even tried
        await nodes.heartbeat(a.db, key.public_hex, "n", "agent", time.time())
        assert await tell_b.build_nodes()
        node = await OpStore.open(a.db, key, self_trusted=False)
        lease_a = await lead(a, tell_a)
        await tell_a.tell_new()  # the first holder: the last minute's ops, a's own untold
        assert await told(a) == []

        item = await a.story("Login page")  # a's own ops: a's notifier tells them, not this
        await a.engine.apply(PROJECT, item.number, Start(), ALICE)
        await node.append(ClaimAgent(PROJECT, item.number, "coder", "coder", "agent:n"), CODER)
        progress = AgentProgress(PROJECT, item.number, {"note": "tool Bash: pytest"}, "agent:n")
        await node.append(progress, CODER)
        await tell_a.tell_new()
        assert await told(a) == ["#1 agent coder: started on agent:n",
                                 "#1 agent coder: tool Bash: pytest"]  # fmt: skip

        await leases.release(a.db, lease_a)  # a steps down; b takes over
        await lead(b, tell_b)
        await node.append(EndAgent(PROJECT, item.number, "completed", 0, node="agent:n"), CODER)
        await Engine(node).apply(PROJECT, item.number, Submit(), CODER)
        with pytest.raises(LeaseLost):
            await tell_a.tell_new()
        await tell_b.tell_new()
        await tell_b.tell_new()  # nothing new: nothing twice
        assert await told(b) == [
            "#1 agent coder: started on agent:n",
            "#1 agent coder: tool Bash: pytest",
            "#1 agent coder: gates passed",
            "#1 Login page: coding → qa (by agent coder)",
        ]


def test_each_agent_op_has_its_line_and_a_retry_or_a_resume_none() -> None:
    qa = AgentRun(PROJECT, 4, "completed", "reviewer", "qa", "agent:b", None, None, 0.0, 0.0,
                  3, 0.0, 0, 0, None, "")  # fmt: skip
    gate = EndAgent(PROJECT, 4, "failed", 0, "gate `pytest` failed:\nE assert 1 == 2", None, 2)
    limited = EndAgent(PROJECT, 4, "rate_limited", None, "", 1796220300.0)
    lines: dict[str, AgentChange] = {
        "takeover": ClaimAgent(PROJECT, 4, "coder", "coder", "agent:b", 1, takeover="agent:a"),
        "retry": ClaimAgent(PROJECT, 4, "coder", "coder", "agent:b", 1),
        "resume": ClaimAgent(PROJECT, 4, "coder", "coder", "agent:b", resume=True),
        "beat": AgentProgress(PROJECT, 4, {"turns": 3}, "agent:b"),
        "gate": gate,
        "stopped": EndAgent(PROJECT, 4, "failed", None, "stopped: by alice", None, 1),
        "limited": limited,
    }
    said = {name: agent_line(change, None, 120) for name, change in lines.items()}
    assert said == {
        "takeover": "#4: agent:b took over from agent:a (silent for 120 s); continuing from"
        " its pushed commits",
        "retry": None,
        "resume": None,
        "beat": None,
        "gate": "#4 agent -: attempt 2 failed: gate `pytest` failed",
        "stopped": "#4 agent -: stopped: by alice",
        "limited": "#4 agent -: rate-limited until 14:05 UTC",
    }
    done = EndAgent(PROJECT, 4, "completed", 0)
    assert agent_line(done, qa, 120) == "#4 agent reviewer: review finished"
