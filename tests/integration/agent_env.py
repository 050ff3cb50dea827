"""An agent pool over a real store, a real git project and the fake agent CLI, for tests."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bot.db import Database
from bot.schema import DAEMON_SCHEMA
from config.agents import AgentProfile, AgentsConfig
from pipeline.agents.logbook import Logbook
from pipeline.agents.pool import AgentPool
from pipeline.agents.work import Parts
from pipeline.bus import Bus
from pipeline.engine import Engine
from pipeline.keys import load_or_create
from pipeline.model import Item, ItemKind, SystemOrigin, UserOrigin
from pipeline.ops import SetProject
from pipeline.sandbox import make_sandbox
from pipeline.store import OpStore, ProjectRecord
from pipeline.transitions import Move

FAKE_AGENT = Path(__file__).resolve().parents[1] / "fakes" / "fake_agent.py"
ALICE = UserOrigin("web", "alice", "lobby")
SETUP = SystemOrigin("test", "setup")
PROJECT = "shop"
GOOD_GATE = ("grep", "-q", "good", "result.txt")


def make_repo(path: Path) -> Path:
    """A git repository with one commit on ``main``."""
    path.mkdir(parents=True)
    for args in (["init", "-q", "-b", "main"], ["config", "user.name", "T"],
                 ["config", "user.email", "t@example.org"]):  # fmt: skip
        subprocess.run(["git", *args], cwd=path, check=True)
    (path / "README.md").write_text("shop\n")
    subprocess.run(["git", "add", "README.md"], cwd=path, check=True)
    subprocess.run(["git", "commit", "-q", "-m", "first"], cwd=path, check=True)
    return path


def git_out(cwd: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=cwd, check=True, capture_output=True, text=True
    ).stdout.strip()


def fake_profile(name: str = "coder", role: str = "coder", **kw: Any) -> AgentProfile:
    return AgentProfile(name=name, role=role, command=[sys.executable, str(FAKE_AGENT)], **kw)


@dataclass
class AgentEnv:
    tmp: Path
    db: Database
    store: OpStore
    engine: Engine
    pool: AgentPool
    bus: Bus
    repo: Path
    data_dir: Path
    calls_dir: Path
    said: list[tuple[str, str]] = field(default_factory=list)

    async def story(self, title: str, body: str = "") -> Item:
        created = await self.engine.create(PROJECT, ItemKind.STORY, title, ALICE, body=body)
        return created.item

    async def code(self, title: str, body: str = "", *, until: str = "qa") -> Item:
        """A new story moved to Coding, once it reached ``until`` (a stage's class name)."""
        item = await self.story(title, body)
        await self.engine.apply(PROJECT, item.number, Move("coding"), ALICE)
        await self.settle(lambda: self.stage_is(item.number, until))
        return await self.item(item.number)

    async def item(self, number: int) -> Item:
        return await self.engine.lookup(PROJECT, number)

    async def settle(self, check: Callable[[], Any]) -> None:
        """Wait until ``await check()`` (or ``check()``) is true (fails after 30 s)."""
        async with asyncio.timeout(30):
            while True:
                value = check()
                if asyncio.iscoroutine(value):
                    value = await value
                if value:
                    return
                await asyncio.sleep(0.05)

    async def stage_is(self, number: int, name: str) -> bool:
        item = await self.engine.find(PROJECT, number)
        return item is not None and type(item.stage).__name__.lower() == name

    def calls(self) -> list[dict[str, Any]]:
        path = self.calls_dir / "calls.jsonl"
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines()]


def make_pool(
    engine: Engine, data_dir: Path, config: AgentsConfig, said: list[tuple[str, str]]
) -> AgentPool:
    def sandbox_for(record: ProjectRecord) -> Any:
        return make_sandbox(record.sandbox, data_dir=data_dir)

    parts = Parts(
        engine=engine, config=config, data_dir=data_dir, node="test-node",
        logbook=Logbook(data_dir), sandbox_for=sandbox_for,
        say=lambda project, line: said.append((project, line)), record_cost=None,
        gate_timeout_s=60,
    )  # fmt: skip
    return AgentPool(parts)


@asynccontextmanager
async def agent_env(
    tmp_path: Path,
    monkeypatch: Any,
    *,
    profiles: Sequence[AgentProfile] = (),
    gates: Sequence[Sequence[str]] = (GOOD_GATE,),
    qa: str = "human",
    sandbox: str = "none",
    max_agents: int = 2,
    max_retries: int = 2,
    stuck_after_s: float = 0.0,
    data_dir: Path | None = None,
) -> AsyncIterator[AgentEnv]:
    """A pool on a bus over a fresh (or the given) data dir; the bus starts (and the pool
    reconciles) on entry and stops on exit."""
    data_dir = data_dir or tmp_path / "data"
    data_dir.mkdir(exist_ok=True)
    calls = tmp_path / "calls"
    calls.mkdir(exist_ok=True)
    monkeypatch.setenv("FAKE_AGENT_DIR", str(calls))
    repo = tmp_path / "repo"
    if not repo.exists():
        make_repo(repo)
    db = await Database.open(data_dir / "musher.db", DAEMON_SCHEMA)
    store = await OpStore.open(db, load_or_create(data_dir))
    engine = Engine(store, max_retries=max_retries)
    await engine.ensure_project(PROJECT, str(repo), origin=SETUP)
    change = SetProject(PROJECT, qa=qa, gates=tuple(tuple(g) for g in gates), sandbox=sandbox)
    await store.append(change, SETUP)
    profiles = list(profiles) or [fake_profile(), fake_profile("qa", "qa")]
    config = AgentsConfig(
        max_agents=max_agents, max_retries=max_retries, stuck_after_s=stuck_after_s,
        inactivity_timeout_s=0, profile=profiles,
    )  # fmt: skip
    said: list[tuple[str, str]] = []
    pool = make_pool(engine, data_dir, config, said)
    bus = Bus(reconcile_interval_s=3600)
    bus.connect(engine)
    bus.add(pool)
    await bus.start()
    env = AgentEnv(tmp_path, db, store, engine, pool, bus, repo, data_dir, calls, said)
    try:
        yield env
    finally:
        await bus.aclose()
        await db.aclose()
