"""``musher agent`` (K3, issue 15): headless build nodes on a real PostgreSQL, working a
project whose remote is a real bare repository served by ``git daemon`` on 127.0.0.1, with
the fake agent CLI. A real ``musher run`` daemon on the same store (no agents of its own)
merges from its checkout and tells its web room what the nodes did (:mod:`bot.announcer`);
the admin's side (creating and moving items, trusting keys) runs in the test through the
engine.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from pipeline.agents.kill import kill_verified
from pipeline.agents.naming import worktree_path
from pipeline.model import ItemKind
from pipeline.transitions import Move
from tests.fakes.git_server import git
from tests.fakes.postgres import Postgres
from tests.integration.daemon import DaemonProcess
from tests.integration.headless_env import (
    ADMIN,
    PROJECT,
    SETUP,
    Cluster,
    all_in,
    cluster,
)
from tests.integration.test_cluster_daemons import MakeDaemon
from tests.integration.test_timers_daemon import lines, say


async def test_two_build_nodes_claim_each_item_once_the_room_is_told_and_all_merge_once(
    tmp_path: Path, postgres: Postgres, make_daemon: MakeDaemon
) -> None:
    async with cluster(tmp_path, postgres) as env:
        env.start("a")
        env.start("b")
        daemon = chat_daemon(env, make_daemon)
        first = await env.coding("story 1")
        await env.wait(lambda: _logged(env, "a", "not trusted yet"))
        assert await env.claims(first) == []  # an untrusted node writes nothing

        await env.trust("a")
        await env.trust("b")
        titles = {n: f"story {n}{' fake:slow' * (n in (2, 3))}" for n in range(1, 11)}
        numbers = [first] + [await env.coding(titles[n]) for n in range(2, 11)]
        await env.wait(lambda: all_in(env, numbers, "Done"))  # merged by the real daemon

        nodes = {}
        for number in numbers:
            [claim] = await env.claims(number)  # one claim per item, cluster-wide
            nodes[number] = claim["node"]
            assert len(env.calls_of(number)) == 1
        assert set(nodes.values()) == {"agent:a", "agent:b"}
        pushed = git("for-each-ref", "--format=%(refname:short)", cwd=env.served / "shop.git")
        assert {f"musher/shop-{n}" for n in numbers} <= set(pushed.split())
        log = git("log", "--format=%s", "main", cwd=env.served / "shop.git").splitlines()
        merged = sorted(line for line in log if line.startswith("musher: merge"))
        assert merged == sorted(f"musher: merge #{n} {titles[n]}" for n in numbers)  # each once

        expected = {
            n: [
                f"#{n} agent coder: started on {nodes[n]}",
                f"#{n} agent coder: On it. | tool Bash: git commit",
                f"#{n} agent coder: gates passed",
                f"#{n} {titles[n]}: coding → merge (by agent coder)",
            ]
            for n in numbers
        }
        await env.wait(lambda: _accounted(daemon, expected))  # told, or left to a summary
        told = lines(daemon, "lobby")
        for number in numbers:  # who took each item, its notable line and its end: never twice
            assert max(told.count(line) for line in expected[number]) <= 1, told

        assert daemon.post("lobby", "cost").status_code == 202  # the nodes booked their spend
        told = await _room_lines(env, daemon, "Last 24 h")
        assert "Last 24 h: $0.1000 over 10 turns (0 tokens in, 0 out)." in told
        assert "  agent:coder: $0.1000 (10 turns)" in told
        assert daemon.post("lobby", "logs 4").status_code == 202  # its output is on the node
        told = await _room_lines(env, daemon, "#4 story 4's agent ran on")
        assert (f"#4 story 4's agent ran on {nodes[4]}: its full output is in agent-logs/shop/4.log"
                " under that node's --workdir.") in told  # fmt: skip
        assert any(line.endswith(f"#4 agent coder: started on {nodes[4]}") for line in told)

        verify = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-m", "bot", "audit", "verify", "--config", str(daemon.config),
             "--data-dir", str(daemon.data_dir)],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert verify.returncode == 0, verify.stdout + verify.stderr
        assert "by 4 author(s)" in verify.stdout  # the test's setup, the daemon, a and b


async def test_a_killed_nodes_claim_is_taken_over_the_room_told_once_and_merged_once(
    tmp_path: Path, postgres: Postgres, make_daemon: MakeDaemon
) -> None:
    async with cluster(tmp_path, postgres, claim_ttl_s=3) as env:
        daemon = chat_daemon(env, make_daemon)
        number, hung = await hung_on_a(env)
        await env.wait(lambda: _pushed(env, number))  # its commit, pushed while it works
        env.stop("a", signal.SIGKILL)
        await kill_verified(hung["pid"], worktree_path(env.workdir("a"), PROJECT, number))

        env.start("b")
        await env.wait(lambda: all_in(env, [number], "Done"))  # merged by the real daemon
        branch = git("log", "--format=%s", f"musher/shop-{number}", cwd=env.served / "shop.git")
        assert f"fake agent: work in progress on #{number}" in branch  # a's pushed commit kept
        claims = await env.claims(number)
        assert next(c.get("takeover") for c in claims if c["node"] == "agent:b") == "agent:a"
        assert len([c for c in claims if c.get("takeover")]) == 1  # handed over once
        log = git("log", "--format=%s", "main", cwd=env.served / "shop.git").splitlines()
        assert log.count(f"musher: merge #{number} flaky fake:hang-once") == 1

        done = f"#{number} flaky fake:hang-once: merge → done (by merge: squash merge)"
        told = await _room_lines(env, daemon, done)
        assert told.count(done) == 1
        assert f"#{number} agent coder: started on agent:a" in told  # the node is named
        took = (f"#{number}: agent:b took over from agent:a (silent for 3 s); continuing from"
                " its pushed commits")  # fmt: skip
        assert told.count(took) == 1
        assert told.count(f"#{number} agent coder: gates passed") == 1  # b's end, once
        assert told.count(f"#{number} flaky fake:hang-once: coding → merge (by agent coder)") == 1

        env.start("a")  # back after its claim was taken: it does not race the new owner
        await env.wait(lambda: _logged(env, "a", "build node a"))
        await asyncio.sleep(3)
        assert len(env.calls_of(number)) == 2  # the hung run and b's; none by the returned a
        assert (await env.stages())[number] == "Done"
        assert lines(daemon, "lobby").count(took) == 1


async def test_with_merge_on_agent_the_node_merges_its_items_and_pushes_the_base(
    tmp_path: Path, postgres: Postgres
) -> None:
    async with cluster(tmp_path, postgres, merge_on="agent") as env:
        await env.trust("a")
        env.start("a")
        await env.engine.ensure_project("plain", str(tmp_path), origin=SETUP)  # no remote
        local = await env.engine.create("plain", ItemKind.STORY, "not for nodes", ADMIN)
        await env.engine.apply("plain", local.item.number, Move("coding"), ADMIN)
        numbers = [await env.coding(f"story {n}") for n in (1, 2)]
        await env.wait(lambda: all_in(env, numbers, "Done"))
        assert await env.store.agent_run("plain", local.item.number) is None  # left alone
        log = git("log", "--format=%s", "main", cwd=env.served / "shop.git").splitlines()
        merged = sorted(line for line in log if line.startswith("musher: merge"))
        assert merged == ["musher: merge #1 story 1", "musher: merge #2 story 2"]
        assert "✅" in env.log("a")


async def hung_on_a(env: Cluster) -> tuple[int, dict[str, Any]]:
    """Both nodes trusted, only ``a`` started, working an item whose first run hangs:
    the item and that run's call."""
    await env.trust("a")
    await env.trust("b")
    env.start("a")
    number = await env.coding("flaky fake:hang-once")
    await env.wait(lambda: _running_on(env, number, "agent:a"))
    [hung] = env.calls_of(number)
    return number, hung


def chat_daemon(env: Cluster, make_daemon: MakeDaemon) -> DaemonProcess:
    """A real ``musher run`` on the cluster's store, started: it runs no agents (Coding is
    left to the nodes), merges from the test's checkout, and its web room ``lobby`` follows
    the project."""
    extra = (f'\n[store]\nurl = "{env.url}"\nlease_ttl_s = 3.0\nclaim_ttl_s = {env.claim_ttl_s}\n'
             '[projects]\nsandbox = "none"\ngit_user_name = "Musher"\n'
             'git_user_email = "musher@example.org"\n')  # fmt: skip
    daemon = make_daemon(extra=extra, window_ms=100).start()
    say(daemon, f"switch {PROJECT}")
    return daemon


async def _room_lines(env: Cluster, daemon: DaemonProcess, until: str) -> list[str]:
    """The lobby's notification lines once ``until`` is among them."""

    async def seen() -> bool:
        return any(until in line for line in lines(daemon, "lobby"))

    try:
        await env.wait(seen)
    except TimeoutError:
        raise AssertionError(f"{until!r} never told: {daemon.history('lobby')}") from None
    return lines(daemon, "lobby")


async def _accounted(daemon: DaemonProcess, expected: dict[int, list[str]]) -> bool:
    """Whether every line of ``expected`` reached the lobby or is among those a storm
    summary (``… and 5 more changes``, past :data:`bot.notifier.MAX_LINES` in one message)
    left out, and nothing else was left out."""
    told = lines(daemon, "lobby")
    left_out = sum(int(m[1]) for line in told if (m := re.match(r"… and (\d+) more", line)))
    missing = sum(line not in told for item in expected.values() for line in item)
    return missing == left_out


async def _pushed(env: Cluster, number: int) -> bool:
    refs = git("for-each-ref", "--format=%(refname:short)", cwd=env.served / "shop.git")
    return f"musher/shop-{number}" in refs.split()


async def _logged(env: Cluster, name: str, text: str) -> bool:
    return text in env.log(name)


async def _running_on(env: Cluster, number: int, node: str) -> bool:
    run = await env.store.agent_run(PROJECT, number)
    return run is not None and run.state == "running" and run.node == node


async def test_a_node_cut_off_past_the_ttl_stops_its_agent_when_it_returns(
    tmp_path: Path, postgres: Postgres
) -> None:
    async with cluster(tmp_path, postgres, claim_ttl_s=3) as env:
        number, hung = await hung_on_a(env)
        env.nodes["a"][0].send_signal(signal.SIGSTOP)  # cut off: no heartbeat, agent runs on
        try:
            env.start("b")
            await env.wait(lambda: all_in(env, [number], "Merge"))
        finally:
            env.nodes["a"][0].send_signal(signal.SIGCONT)
        await env.wait(lambda: _logged(env, "a", "agent:b took the item over"))
        await env.wait(lambda: _gone(hung["pid"]))  # a killed its agent instead of racing
        run = await env.store.agent_run(PROJECT, number)
        assert run is not None and (run.node, run.state) == ("agent:b", "completed")
        assert (await env.stages())[number] == "Merge"


async def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False
