"""B8 agents: agent spawn and gate runs against their bare baselines, and ``move N coding``
→ the agent has read its prompt.

* spawn: :class:`~pipeline.agents.runner.AgentProcess` (process group, prompt on stdin,
  stream-json reading, limit watch, verified kill on exit) vs a bare
  ``asyncio.create_subprocess_exec`` of the same script with the same prompt; both measured
  to the moment the script has read its prompt (``time.monotonic()`` is system-wide).
* gate: :func:`~pipeline.gates.run_gates` in the ``none`` sandbox vs the same argv run with
  a bare ``create_subprocess_exec``.
* move → prompt: a real store, engine, bus and pool over a git repository; from the
  ``move`` call to the agent reading its prompt (worktree creation included).

Prints one JSON line; asserts nothing.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bot.db import Database
from bot.schema import DAEMON_SCHEMA
from config.agents import AgentProfile, AgentsConfig
from pipeline.agents.logbook import Logbook
from pipeline.agents.pool import AgentPool
from pipeline.agents.runner import AgentProcess, Limits
from pipeline.agents.stream import Seen
from pipeline.agents.work import Parts
from pipeline.bus import Bus
from pipeline.engine import Engine
from pipeline.gates import run_gates
from pipeline.keys import load_or_create
from pipeline.model import ItemKind, SystemOrigin
from pipeline.sandbox import LocalSandbox, SandboxProject
from pipeline.store import OpStore
from pipeline.transitions import Move

RUNS = 20
ORIGIN = SystemOrigin("bench", "agents")
SCRIPT = r"""
import json, os, sys, time
sys.stdin.read()
with open(os.environ["BENCH_STAMPS"], "a") as out:
    out.write(f"{time.monotonic()}\n")
print(json.dumps({"type": "system", "subtype": "init", "session_id": "bench"}), flush=True)
print(json.dumps({"type": "result", "result": "ok", "total_cost_usd": 0}), flush=True)
"""


def count(path: Path) -> int:
    """How many stamps ``path`` holds (0 before the first)."""
    return len(path.read_text().splitlines()) if path.exists() else 0


def last_stamp(path: Path) -> float:
    return float(path.read_text().splitlines()[-1])


async def bare_spawn(script: Path, stamps: Path, cwd: Path) -> float:
    start = time.monotonic()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(script), cwd=cwd, stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    await proc.communicate(b"prompt")
    return last_stamp(stamps) - start


async def our_spawn(script: Path, stamps: Path, cwd: Path) -> float:
    project = SandboxProject("bench", cwd)
    launch = LocalSandbox().launch(project, [sys.executable, str(script)], cwd)
    process = AgentProcess(launch, "prompt", cwd, Limits(50, 5.0, 0, 0))

    async def on_line(seen: Seen) -> None:
        return None

    start = time.monotonic()
    await process.run(on_line)
    return last_stamp(stamps) - start


async def gates(cwd: Path) -> tuple[float, float]:
    argv = ("true",)
    start = time.monotonic()
    proc = await asyncio.create_subprocess_exec(*argv, cwd=cwd)
    await proc.wait()
    bare = time.monotonic() - start
    start = time.monotonic()
    report = await run_gates(LocalSandbox(), SandboxProject("bench", cwd), (argv,), cwd=cwd)
    assert report.passed
    return bare, time.monotonic() - start


def make_repo(path: Path) -> None:
    path.mkdir()
    for args in (["init", "-q", "-b", "main"], ["config", "user.name", "B"],
                 ["config", "user.email", "b@example.org"],
                 ["commit", "-q", "--allow-empty", "-m", "first"]):  # fmt: skip
        subprocess.run(["git", *args], cwd=path, check=True)


async def move_to_prompt(tmp: Path, script: Path, stamps: Path, runs: int) -> list[float]:
    repo, data = tmp / "repo", tmp / "data"
    make_repo(repo)
    data.mkdir()
    db = await Database.open(data / "musher.db", DAEMON_SCHEMA)
    try:
        engine = Engine(await OpStore.open(db, load_or_create(data)))
        await engine.ensure_project("bench", str(repo), origin=ORIGIN)
        profile = AgentProfile(name="coder", command=[sys.executable, str(script)])
        config = AgentsConfig(max_agents=4, profile=[profile], inactivity_timeout_s=0)
        parts = Parts(
            engine=engine, config=config, data_dir=data, node="bench", logbook=Logbook(data),
            sandbox_for=lambda record: LocalSandbox(), say=lambda project, line: None,
            record_cost=None,
        )  # fmt: skip
        bus = Bus(reconcile_interval_s=3600)
        bus.connect(engine)
        bus.add(AgentPool(parts))
        await bus.start()
        out = []
        for _ in range(runs):
            item = (await engine.create("bench", ItemKind.STORY, "bench", ORIGIN)).item
            seen = count(stamps)
            start = time.monotonic()
            await engine.apply("bench", item.number, Move("coding"), ORIGIN)
            while count(stamps) == seen:  # noqa: ASYNC110 - the agent is another process
                await asyncio.sleep(0.002)
            out.append(last_stamp(stamps) - start)
        await bus.aclose()
        return out
    finally:
        await db.aclose()


def ms(values: list[float]) -> float:
    return round(statistics.median(values) * 1000, 2)


async def main() -> None:
    logging.disable(logging.WARNING)
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        script, stamps = tmp / "agent.py", tmp / "stamps"
        script.write_text(SCRIPT)
        os.environ["BENCH_STAMPS"] = str(stamps)
        bare, ours, gate_bare, gate_ours = [], [], [], []
        for _ in range(RUNS):
            bare.append(await bare_spawn(script, stamps, tmp))
            ours.append(await our_spawn(script, stamps, tmp))
            b, o = await gates(tmp)
            gate_bare.append(b)
            gate_ours.append(o)
        moved = await move_to_prompt(tmp, script, stamps, 10)
    figures = {
        "spawn_bare_p50_ms": ms(bare), "spawn_ours_p50_ms": ms(ours),
        "spawn_ratio": round(statistics.median(ours) / statistics.median(bare), 3),
        "gate_bare_p50_ms": ms(gate_bare), "gate_ours_p50_ms": ms(gate_ours),
        "gate_ratio": round(statistics.median(gate_ours) / statistics.median(gate_bare), 3),
        "move_to_prompt_p50_ms": ms(moved),
        "move_to_prompt_max_ms": round(max(moved) * 1000, 2),
    }  # fmt: skip
    params = {"runs": RUNS, "move_runs": len(moved), "targets": "spawn <= 1.2, gate <= 1.1"}
    print(json.dumps({"bench": "B8_agents", "params": params, "figures": figures}), flush=True)


if __name__ == "__main__":
    asyncio.run(main())
