"""A running daemon core with a real git project ``app`` for merge tests: commands typed in
a room, the bus running (so the merge subscriber acts), and plain git standing in for the
agent that commits on ``musher/app-<N>`` in its worktree."""

from __future__ import annotations

import asyncio
import shlex
import sys
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from pipeline.agents.naming import branch_name, worktree_path, worktrees_root
from pipeline.model import Item, stage_name
from tests.fakes.git_server import git
from tests.unit.project_env import ProjectRoom, project_room

PROJECT = "app"


@dataclass
class MergeRoom:
    room: ProjectRoom
    repo: Path

    async def say(self, text: str) -> str:
        return await self.room.say(text)

    def agent_commit(self, number: int, files: Mapping[str, str], message: str = "work") -> str:
        """Commit ``files`` on the item's branch in its worktree (made from main if missing)."""
        where = worktree_path(self.room.data_dir, PROJECT, number)
        if not where.exists():
            branch = branch_name(PROJECT, number)
            git("worktree", "add", "--quiet", "-b", branch, str(where), "main", cwd=self.repo)
        for name, text in files.items():
            (where / name).write_text(text)
        git("add", "--all", cwd=where)
        git("commit", "--quiet", "-m", message, cwd=where)
        return git("rev-parse", "HEAD", cwd=where).strip()

    async def set_gates(self, gates: str, commit: bool = True) -> None:
        """``project set gates``, then commit the settings file unless told not to."""
        assert (await self.say(f"project set gates {gates}")).startswith("app: gates is now")
        if commit:
            git("commit", "--quiet", "-am", "gates", cwd=self.repo)

    def main_log(self) -> list[str]:
        return git("log", "--format=%s", "main", cwd=self.repo).splitlines()

    def main_tip(self) -> str:
        return git("rev-parse", "main", cwd=self.repo).strip()

    def merge_dirs(self) -> list[str]:
        root = worktrees_root(self.room.data_dir) / PROJECT
        return sorted(p.name for p in root.glob("merge-*")) if root.is_dir() else []

    async def item(self, number: int) -> Item:
        return await self.room.core.engine.lookup(PROJECT, number)

    async def settled(self, number: int, within: float = 60.0) -> Item:
        """The item once it left Merge (merged or failed)."""
        async with asyncio.timeout(within):
            while True:
                item = await self.item(number)
                if stage_name(item.stage) not in ("merge", "qa", "coding", "backlog"):
                    return item
                await asyncio.sleep(0.05)

    async def room_lines(self, session: str = "web:lobby") -> list[str]:
        entries = await self.room.core.journal.history(session)
        return [e.text for e in entries if e.role == "bot"]

    async def wait_line(self, fragment: str, within: float = 10.0) -> str:
        """The first bot line in the lobby holding ``fragment`` (notifications are merged
        per second)."""
        async with asyncio.timeout(within):
            while True:
                for text in await self.room_lines():
                    for line in text.splitlines():
                        if fragment in line:
                            return line
                await asyncio.sleep(0.05)


@asynccontextmanager
async def merge_room(tmp_path: Path, env: Mapping[str, str] = {}) -> AsyncIterator[MergeRoom]:
    """Project ``app`` (a new repository on ``main``, no gates) is the lobby's project and
    the pipeline's subscribers run. No agents: plain git stands in for them."""
    async with project_room(tmp_path, {"MUSHER_AGENTS__MAX_AGENTS": "0", **env}) as room:
        assert (await room.say("new project app")).startswith("Created project app.")
        assert (await room.say("switch app")).startswith("This room now works on app")
        repo = room.root / PROJECT
        pipeline = room.core.pipeline
        pipeline.timers.start()
        await pipeline.bus.start()
        try:
            yield MergeRoom(room, repo)
        finally:
            await pipeline.bus.aclose()


async def in_coding(app: MergeRoom, title: str = "Login page") -> int:
    """``new story <title>`` and ``move N coding``; returns N."""
    assert (await app.say(f"new story {title}")).startswith("Created #")
    number = len(await app.room.core.engine.items(PROJECT))
    assert await app.say(f"move {number} coding") == f"#{number} {title}: backlog → coding."
    return number


def python_gate(tmp_path: Path, code: str) -> str:
    """A gate command running ``code`` from a script outside the repository."""
    script = tmp_path / f"gate{len(list(tmp_path.glob('gate*.py')))}.py"
    script.write_text(code)
    return shlex.join([sys.executable, str(script)])
