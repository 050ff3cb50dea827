"""Headless build nodes for tests and ``bench.headless``: a real PostgreSQL store, a
project whose remote is a bare repository served (with push) by ``git daemon`` on
127.0.0.1, ``musher agent`` subprocesses with the fake agent CLI, and the admin's side
(items, trust) through the engine in this process (the tests add a real ``musher run``
daemon that merges and tells its room, see ``test_headless_agents.chat_daemon``).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Protocol

from bot.store_url import open_db
from pipeline.engine import Engine
from pipeline.keys import load_or_create
from pipeline.model import ItemKind, SystemOrigin, UserOrigin
from pipeline.node_ops import TrustNode
from pipeline.ops import SetProject
from pipeline.storage import Storage
from pipeline.store import OpStore
from pipeline.transitions import Move
from tests.fakes.git_server import bare_repo, git, git_daemon

FAKE_AGENT = Path(__file__).resolve().parents[1] / "fakes" / "fake_agent.py"
ADMIN = UserOrigin("web", "admin", "lobby")
SETUP = SystemOrigin("test", "setup")
PROJECT = "shop"
GATE = '["grep", "-q", "good", "result.txt"]'
UNION = "result.txt merge=union\n"
"""Every fake agent writes ``result.txt``: the merges of several items keep all their lines."""


class Server(Protocol):
    def new_database(self) -> str: ...


@dataclass
class Cluster:
    tmp: Path
    url: str
    remote: str
    served: Path
    db: Storage
    store: OpStore
    engine: Engine
    checkout: Path
    config: Path
    calls: Path
    claim_ttl_s: float
    nodes: dict[str, tuple[subprocess.Popen[bytes], IO[bytes]]] = field(default_factory=dict)

    def workdir(self, name: str) -> Path:
        return self.tmp / f"node-{name}"

    def key_of(self, name: str) -> str:
        argv = [*self._musher(), "--print-key", "--workdir", str(self.workdir(name))]
        return subprocess.run(argv, capture_output=True, text=True, check=True).stdout.strip()

    def _musher(self) -> list[str]:
        return [sys.executable, "-m", "bot", "agent", "--config", str(self.config)]

    def start(self, name: str) -> None:
        log = (self.tmp / f"node-{name}.log").open("ab")
        argv = [*self._musher(), "--name", name, "--workdir", str(self.workdir(name))]
        env = {**os.environ, "FAKE_AGENT_DIR": str(self.calls)}
        self.nodes[name] = (subprocess.Popen(argv, stdout=log, stderr=log, env=env), log)

    def stop(self, name: str, sig: int = signal.SIGTERM) -> None:
        proc, log = self.nodes.pop(name)
        proc.send_signal(sig)
        try:
            proc.wait(15)
        finally:
            log.close()

    def log(self, name: str) -> str:
        return (self.tmp / f"node-{name}.log").read_text()

    async def trust(self, name: str) -> None:
        await self.store.append(TrustNode(self.key_of(name)), ADMIN)

    async def coding(self, title: str) -> int:
        created = await self.engine.create(PROJECT, ItemKind.STORY, title, ADMIN)
        await self.engine.apply(PROJECT, created.item.number, Move("coding"), ADMIN)
        return created.item.number

    async def wait(self, check: Callable[[], Any]) -> None:
        """Until ``await check()`` is true (fails after 40 s)."""
        async with asyncio.timeout(40):
            while True:
                if await check():
                    return
                await asyncio.sleep(0.2)

    async def stages(self) -> dict[int, str]:
        return {i.number: type(i.stage).__name__ for i in await self.engine.items(PROJECT)}

    async def claims(self, number: int) -> list[dict[str, Any]]:
        ops = await self.store.item_ops(PROJECT, number)
        return [json.loads(op.op.payload) for op in ops if op.op.kind == "agent.claim"]

    def calls_of(self, number: int) -> list[dict[str, Any]]:
        path = self.calls / "calls.jsonl"
        lines = path.read_text().splitlines() if path.exists() else []
        calls = [json.loads(line) for line in lines]
        return [c for c in calls if f"#{number} " in c["prompt"]]


@asynccontextmanager
async def cluster(
    tmp_path: Path, postgres: Server, claim_ttl_s: float = 60, merge_on: str = "daemon"
) -> AsyncIterator[Cluster]:
    url = postgres.new_database()
    served = tmp_path / "served"
    served.mkdir()
    bare_repo(served, PROJECT, {"README.md": "shop\n", ".gitattributes": UNION}, branch="main")
    calls = tmp_path / "calls"
    calls.mkdir()
    config = tmp_path / "bot.toml"
    config.write_text(
        f'[store]\nurl = "{url}"\nlease_ttl_s = 3.0\nclaim_ttl_s = {claim_ttl_s}\n'
        f'[agents]\nmax_agents = 1\ninactivity_timeout_s = 0\nmerge_on = "{merge_on}"\n'
        '[projects]\ngit_user_name = "Musher"\ngit_user_email = "musher@example.org"\n'
        f'[[agents.profile]]\nname = "coder"\nrole = "coder"\n'
        f'command = ["{sys.executable}", "{FAKE_AGENT}"]\n'
    )
    with git_daemon(served, push=True) as base:
        remote = f"{base}/{PROJECT}.git"
        checkout = tmp_path / "daemon-checkout"
        git("clone", "--quiet", remote, str(checkout), cwd=tmp_path)
        daemon_dir = tmp_path / "daemon"
        db = await open_db(url, daemon_dir)
        store = await OpStore.open(db, load_or_create(daemon_dir))
        engine = Engine(store)
        await engine.ensure_project(PROJECT, str(checkout), origin=SETUP)
        gates = (tuple(json.loads(GATE)),)
        await store.append(SetProject(PROJECT, qa="server", gates=gates, remote=remote), SETUP)
        env = Cluster(tmp_path, url, remote, served, db, store, engine, checkout, config, calls,
                      claim_ttl_s)  # fmt: skip
        try:
            yield env
        finally:
            for name in list(env.nodes):
                env.stop(name)
            await db.aclose()


async def all_in(env: Cluster, numbers: list[int], stage: str) -> bool:
    stages = await env.stages()
    return all(stages.get(n) == stage for n in numbers)
