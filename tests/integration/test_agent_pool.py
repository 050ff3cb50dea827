"""The agent pool (A1, A2, A4) with the fake agent CLI on real git repositories."""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp

from bot import agent_api, pipeline_api
from bot.http import HttpServer, build_app
from bot.metrics import Metrics
from config import load_settings
from pipeline import audit
from pipeline.agent_ops import EndAgent
from pipeline.agents.kill import group_members, processes_in
from pipeline.agents.naming import branch_name, worktree_path
from pipeline.errors import PipelineError
from pipeline.events import ItemCreated
from pipeline.transitions import Move
from tests.integration.agent_env import (
    ALICE,
    FAKE_AGENT,
    GOOD_GATE,
    PROJECT,
    agent_env,
    fake_profile,
    git_out,
    make_repo,
)
from tests.unit.test_sandbox import need_bwrap

BASE_PYTHON = os.path.realpath(sys.executable)  # the venv's python may live under /tmp


async def test_an_item_entering_coding_gets_an_agent_whose_commit_reaches_qa(
    tmp_path: Path, monkeypatch: Any
) -> None:
    async with agent_env(tmp_path, monkeypatch) as env:
        item = await env.story("Add a cart")

        await env.engine.apply(PROJECT, item.number, Move("coding"), ALICE)
        await env.settle(lambda: env.stage_is(item.number, "qa"))

        tree = worktree_path(env.data_dir, PROJECT, item.number)
        branch = branch_name(PROJECT, item.number)
        assert git_out(env.repo, "log", "--format=%s", f"main..{branch}") == "fake agent: #1"
        assert git_out(tree, "rev-parse", "--abbrev-ref", "HEAD") == branch
        run = await env.store.agent_run(PROJECT, item.number)
        assert run is not None and (run.state, run.exit_code) == ("completed", 0)
        assert run.cost_usd == 0.01
        assert any("gates passed" in line for _, line in env.said)
        assert len(env.calls()) == 1


async def test_with_server_qa_passing_gates_send_the_item_to_merge(
    tmp_path: Path, monkeypatch: Any
) -> None:
    async with agent_env(tmp_path, monkeypatch, qa="server") as env:
        item = await env.story("Add a cart")

        await env.engine.apply(PROJECT, item.number, Move("coding"), ALICE)

        await env.settle(lambda: env.stage_is(item.number, "merge"))


async def test_a_failing_gate_is_retried_with_its_tail_then_blocks(
    tmp_path: Path, monkeypatch: Any
) -> None:
    async with agent_env(tmp_path, monkeypatch, max_retries=1) as env:
        blocked = item = await env.code("Add a cart", "fake:bad", until="blocked")
        assert "gate `grep -q good result.txt` failed" in blocked.stage.reason  # type: ignore[union-attr]
        first, second = env.calls()
        assert "The last attempt failed" not in first["prompt"]
        assert "gate `grep -q good result.txt` failed" in second["prompt"]
        assert "--resume" in second["argv"]  # the retry resumes the session warm
        run = await env.store.agent_run(PROJECT, item.number)
        assert run is not None and (run.state, run.attempts) == ("failed", 2)


async def test_an_agent_that_commits_nothing_fails_its_attempt(
    tmp_path: Path, monkeypatch: Any
) -> None:
    async with agent_env(tmp_path, monkeypatch, max_retries=0) as env:
        blocked = await env.code("Add a cart", "fake:no-commit", until="blocked")
        assert "no commits on musher/shop-1 ahead of main" in blocked.stage.reason  # type: ignore[union-attr]


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


async def test_twenty_concurrent_starts_run_one_agent(tmp_path: Path, monkeypatch: Any) -> None:
    async with agent_env(tmp_path, monkeypatch) as env:
        item = await env.story("Add a cart", body="fake:hang")

        replies = await asyncio.gather(
            *(env.pool.start(PROJECT, item.number, None, ALICE) for _ in range(20)),
            return_exceptions=True,
        )
        await env.settle(lambda: len(env.calls()) >= 1)
        await asyncio.sleep(0.5)

        started = [r for r in replies if isinstance(r, str) and r.startswith("Started")]
        refused = [r for r in replies if isinstance(r, PipelineError)]
        assert len(started) == 1 and len(refused) == 19
        assert "already has an agent" in str(refused[0])
        assert len(env.calls()) == 1
        assert await env.stage_is(item.number, "coding")


async def test_a_start_racing_the_pools_look_at_a_new_item_leaves_its_agent_alone(
    tmp_path: Path, monkeypatch: Any
) -> None:
    async with agent_env(tmp_path, monkeypatch) as env:
        item = await env.story("Add a cart", body="fake:hang")
        project = env.engine.project
        injected = False

        async def start_first(name: str) -> Any:  # `start` lands while the pool looks
            nonlocal injected  # at the item's creation, before it takes its lock
            if not injected:
                injected = True
                await env.pool.start(PROJECT, item.number, None, ALICE)
            return await project(name)

        monkeypatch.setattr(env.engine, "project", start_first)
        created = ItemCreated(PROJECT, item.number, item.title, item.kind, item.stage, (),
                              ALICE, time.time())  # fmt: skip
        await env.pool.handle(created)  # #1 was in Backlog when the event was made
        monkeypatch.setattr(env.engine, "project", project)
        await env.settle(lambda: len(env.calls()) >= 1)
        await asyncio.sleep(0.5)

        run = await env.store.agent_run(PROJECT, item.number)
        assert run is not None and run.state in ("pending", "running"), run
        assert len(env.calls()) == 1 and [v.state for v in env.pool.views()] == ["running"]
        ends = [a.change for a in await env.store.item_ops(PROJECT, item.number)
                if isinstance(a.change, EndAgent)]  # fmt: skip
        assert ends == []  # never stopped as "in Backlog" and started again


async def test_stop_kills_the_agent_its_group_and_its_worktree_processes_first(
    tmp_path: Path, monkeypatch: Any
) -> None:
    async with agent_env(tmp_path, monkeypatch) as env:
        item = await env.story("Add a cart", body="fake:hang")
        await env.pool.start(PROJECT, item.number, None, ALICE)
        await env.settle(lambda: len(env.calls()) == 1)
        tree = worktree_path(env.data_dir, PROJECT, item.number)
        await env.settle(lambda: len(processes_in(tree)) >= 2)  # it and its grandchild `sleep`
        pids = processes_in(tree)
        agent = env.calls()[0]["pid"]
        assert agent in pids

        reply = await env.pool.stop_item(PROJECT, item.number, ALICE)

        assert reply.startswith("Stopped the agent on #1")
        assert not any(alive(pid) for pid in pids)
        assert group_members(agent) == []
        run = await env.store.agent_run(PROJECT, item.number)
        assert run is not None and run.state == "failed" and run.reason.startswith("stopped")
        assert env.pool.views() == []
        await env.pool.reconcile()  # a stopped agent is not restarted by the reconciler
        await asyncio.sleep(0.3)
        assert len(env.calls()) == 1


async def test_a_hard_rate_limit_waits_for_its_reset_without_spending_a_retry(
    tmp_path: Path, monkeypatch: Any
) -> None:
    async with agent_env(tmp_path, monkeypatch, max_retries=0) as env:
        item = await env.story("Add a cart", body="fake:rate-limit")

        await env.engine.apply(PROJECT, item.number, Move("coding"), ALICE)
        await env.settle(lambda: env.store.agent_run(PROJECT, item.number))

        async def limited() -> bool:
            run = await env.store.agent_run(PROJECT, item.number)
            return run is not None and run.state == "rate_limited"

        await env.settle(limited)  # the row first, then the pool arms its resume timer
        await env.settle(lambda: [v.state for v in env.pool.views()] == ["rate-limited"])
        await env.settle(lambda: env.stage_is(item.number, "qa"))
        run = await env.store.agent_run(PROJECT, item.number)
        assert run is not None and run.attempts == 0
        assert len(env.calls()) == 2 and "--resume" in env.calls()[1]["argv"]


async def test_an_agent_over_budget_or_stuck_is_killed_as_a_failed_attempt(
    tmp_path: Path, monkeypatch: Any
) -> None:
    profile = fake_profile(max_budget_usd=1.0)
    async with agent_env(
        tmp_path, monkeypatch, profiles=[profile], max_retries=0, stuck_after_s=1.0
    ) as env:
        spender = await env.story("Spend", body="fake:budget")
        sleeper = await env.story("Sleep", body="fake:hang")

        for item in (spender, sleeper):
            await env.engine.apply(PROJECT, item.number, Move("coding"), ALICE)
        await env.settle(lambda: env.stage_is(spender.number, "blocked"))
        await env.settle(lambda: env.stage_is(sleeper.number, "blocked"))

        spent = await env.item(spender.number)
        stuck = await env.item(sleeper.number)
        assert "over max_budget_usd ($99.00 > $1.00)" in spent.stage.reason  # type: ignore[union-attr]
        assert "stuck: no progress for 1 s" in stuck.stage.reason  # type: ignore[union-attr]
        for call in env.calls():
            assert not alive(call["pid"])


async def test_shutdown_parks_running_agents_and_a_restart_resumes_them_once(
    tmp_path: Path, monkeypatch: Any
) -> None:
    data = tmp_path / "data"
    monkeypatch.setenv("FAKE_AGENT_MODE", "hang")
    async with agent_env(tmp_path, monkeypatch, data_dir=data) as env:
        item = await env.story("Add a cart")
        await env.engine.apply(PROJECT, item.number, Move("coding"), ALICE)
        await env.settle(lambda: len(env.calls()) == 1)

        async def has_session() -> bool:
            run = await env.store.agent_run(PROJECT, item.number)
            return run is not None and run.session_id is not None

        await env.settle(has_session)
    first = env.calls()[0]
    assert not alive(first["pid"])  # parked: the process is gone, the row says running
    monkeypatch.setenv("FAKE_AGENT_MODE", "commit")

    async with agent_env(tmp_path, monkeypatch, data_dir=data) as env:
        run = await env.store.agent_run(PROJECT, item.number)
        assert run is not None and run.state in ("pending", "running")
        await env.pool.reconcile()  # a second reconcile must not start a second agent
        await env.settle(lambda: env.stage_is(item.number, "qa"))

        calls = env.calls()
        assert len(calls) == 2
        assert calls[1]["argv"][-2:] == ["--resume", first_session(first)]
        assert (await audit.verify(env.db)).ok


async def test_a_cli_crashing_before_its_session_is_retried_once_without_resume(
    tmp_path: Path, monkeypatch: Any
) -> None:
    data = tmp_path / "data"
    monkeypatch.setenv("FAKE_AGENT_MODE", "hang")
    async with agent_env(tmp_path, monkeypatch, data_dir=data) as env:
        item = await env.story("Add a cart")
        await env.engine.apply(PROJECT, item.number, Move("coding"), ALICE)
        await env.settle(lambda: len(env.calls()) == 1)
        await asyncio.sleep(0.5)
    monkeypatch.setenv("FAKE_AGENT_MODE", "crash-on-resume")
    async with agent_env(tmp_path, monkeypatch, data_dir=data) as env:
        await env.settle(lambda: env.stage_is(item.number, "qa"))

        argvs = [c["argv"] for c in env.calls()[1:]]
        assert ["--resume" in a for a in argvs] == [True, False]
        run = await env.store.agent_run(PROJECT, item.number)
        assert run is not None and run.attempts == 0


async def test_purge_during_a_running_agent_clears_every_layer_for_good(
    tmp_path: Path, monkeypatch: Any
) -> None:
    data = tmp_path / "data"
    async with agent_env(tmp_path, monkeypatch, data_dir=data) as env:
        item = await env.story("Add a cart", body="fake:hang")
        await env.engine.apply(PROJECT, item.number, Move("coding"), ALICE)
        await env.settle(lambda: len(env.calls()) == 1)
        tree = worktree_path(env.data_dir, PROJECT, item.number)
        await env.settle(lambda: len(processes_in(tree)) >= 2)
        pids = processes_in(tree)

        layers = await env.engine.purge(PROJECT, item.number, ALICE)

        assert layers[:2] == ["item row", "agent state"]
        assert "running agent" in layers and "worktree" in layers
        assert f"branch {branch_name(PROJECT, item.number)}" in layers
        assert not any(alive(pid) for pid in pids)
        assert not tree.exists()
    for _ in range(2):  # restart twice: nothing comes back, nothing runs
        async with agent_env(tmp_path, monkeypatch, data_dir=data) as env:
            await env.pool.reconcile()
            assert await env.engine.find(PROJECT, item.number) is None
            assert await env.store.agent_runs() == []
            assert env.pool.views() == []
            assert (await env.story("Next")).number > item.number
            assert branch_name(PROJECT, 1) not in git_out(env.repo, "branch", "--list")
    assert len(env.calls()) == 1


def first_session(call: dict[str, Any]) -> str:
    """The session id the fake agent reported (it is in the agent's log line)."""
    return call["session"]


async def test_in_bwrap_the_agent_commits_in_its_worktree_but_cannot_see_the_data_dir(
    tmp_path: Path, monkeypatch: Any
) -> None:
    need_bwrap()
    data = tmp_path / "data"
    hidden = ("sh", "-c", f"test ! -e {data}/node.key && test ! -e {data}/musher.db")
    escape = ("sh", "-c", f"touch {tmp_path}/escaped; true")  # /tmp is private in bwrap
    # /tmp is private in bwrap: a checkout under /tmp (as CI's clone may be) is invisible
    # there, so the agent runs from the repository's .git (bound for its commits) on the
    # base interpreter (the fake agent needs only the standard library).
    agent = make_repo(tmp_path / "repo") / ".git" / "fake_agent.py"
    shutil.copy(FAKE_AGENT, agent)
    python = BASE_PYTHON
    profiles = [
        fake_profile().model_copy(update={"command": [python, str(agent)]}),
        fake_profile("qa", "qa").model_copy(update={"command": [python, str(agent)]}),
    ]
    async with agent_env(
        tmp_path, monkeypatch, profiles=profiles, sandbox="bwrap", data_dir=data,
        gates=[GOOD_GATE, hidden, escape],
    ) as env:  # fmt: skip
        item = await env.story("Add a cart")

        await env.engine.apply(PROJECT, item.number, Move("coding"), ALICE)
        await env.settle(lambda: env.stage_is(item.number, "qa"))

        assert (data / "node.key").exists()
        assert not (tmp_path / "escaped").exists()
        log = git_out(env.repo, "log", "--format=%s", f"main..{branch_name(PROJECT, 1)}")
        assert log == "fake agent: #1"


async def test_the_board_api_shows_each_items_agent_and_its_output(
    tmp_path: Path, monkeypatch: Any
) -> None:
    async with agent_env(tmp_path, monkeypatch) as env:
        item = await env.story("Add a cart")
        await env.story("Add a till")
        await env.engine.apply(PROJECT, item.number, Move("coding"), ALICE)
        await env.settle(lambda: env.stage_is(item.number, "qa"))
        app = build_app(Metrics(), dict, load_settings(None, {}))
        pipeline_api.mount(app, env.engine)
        agent_api.mount(app, env.engine, env.pool)
        server = HttpServer(app, "127.0.0.1", 0)
        url = await server.start()
        try:
            async with aiohttp.ClientSession() as http:
                async with http.get(f"{url}/api/v1/projects/{PROJECT}/items") as response:
                    items = (await response.json())["items"]
                async with http.get(f"{url}/api/v1/projects/{PROJECT}/items/1/agent") as response:
                    detail = await response.json()
                async with http.get(
                    f"{url}/api/v1/projects/{PROJECT}/items/1/agent?lines=0"
                ) as bad:
                    assert bad.status == 400
                async with http.get(f"{url}/api/v1/projects/{PROJECT}/items/7/agent") as gone:
                    assert gone.status == 404
        finally:
            await server.aclose()

        first, second = items
        assert first["agent"]["state"] == "completed" and first["agent"]["profile"] == "coder"
        assert first["agent"]["cost_usd"] == 0.01
        assert second["agent"] is None
        assert detail["agent"]["state"] == "completed" and detail["queued"] is False
        assert any("gates passed" in line for line in detail["lines"])


async def test_with_agent_qa_a_qa_agent_approves_or_rejects_with_its_report(
    tmp_path: Path, monkeypatch: Any
) -> None:
    async with agent_env(tmp_path, monkeypatch, qa="agent", max_retries=0) as env:
        good = await env.story("Add a cart")
        bad = await env.story("Add a till", body="fake-qa:reject")

        for item in (good, bad):
            await env.engine.apply(PROJECT, item.number, Move("coding"), ALICE)
        await env.settle(lambda: env.stage_is(good.number, "merge"))
        await env.settle(lambda: env.stage_is(bad.number, "blocked"))

        blocked = await env.item(bad.number)
        assert "the cart forgets items" in blocked.stage.reason  # type: ignore[union-attr]
        roles = sorted(c["prompt"].split()[0] for c in env.calls())
        assert roles == ["Review", "Review", "You", "You"]
        runs = {r.item: r for r in await env.store.agent_runs(PROJECT)}
        assert (runs[1].role, runs[1].state) == ("qa", "completed")


async def test_stopping_a_queued_item_keeps_it_out_of_the_queue(
    tmp_path: Path, monkeypatch: Any
) -> None:
    monkeypatch.setenv("FAKE_AGENT_MODE", "hang")
    async with agent_env(tmp_path, monkeypatch, max_agents=1) as env:
        first, second = await env.story("Add a cart"), await env.story("Add a till")
        for item in (first, second):
            await env.engine.apply(PROJECT, item.number, Move("coding"), ALICE)
        await env.settle(lambda: [v.state for v in env.pool.views()] == ["running", "queued"])

        reply = await env.pool.stop_item(PROJECT, second.number, ALICE)
        await env.pool.reconcile()

        assert reply == "#2 Add a till no longer waits for an agent (`start 2` to resume)."
        assert [v.number for v in env.pool.views()] == [first.number]
        assert (await env.pool.start(PROJECT, second.number, None, ALICE)).startswith(
            "#2 is queued"
        )
