"""A daemon core in a temp dir for the project commands: a room that types commands, the
lines told to other rooms, and the project root (``tmp/projects``)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

from bot.commands.registry import CommandContext
from bot.daemon import Core, build_core, ensure_default_project
from bot.db import Database
from bot.messages import Session
from bot.schema import DAEMON_SCHEMA
from config import load_settings
from pipeline.keys import load_or_create
from pipeline.store import OpStore


@dataclass
class ProjectRoom:
    core: Core
    db: Database
    root: Path
    data_dir: Path
    told: list[tuple[str, str]] = field(default_factory=list)

    async def say(
        self, text: str, sender: str = "alice", admin: bool = True, session: str = "web:lobby",
        via: str = "chat",
    ) -> str:  # fmt: skip
        invocation = self.core.registry.match(text)
        assert invocation is not None, f"{text!r} is not a command"
        ctx = CommandContext(Session.of(session), sender, admin, via)
        return (await self.core.registry.run(invocation, ctx)).text

    async def ops(self) -> list[str]:
        rows = await self.db.read("SELECT kind FROM ops ORDER BY rowid")
        return [r[0] for r in rows]

    async def tell(self, session: str, text: str) -> None:
        self.told.append((session, text))


@asynccontextmanager
async def project_room(
    tmp_path: Path, env: Mapping[str, str] = {}, cwd_name: str = "home"
) -> AsyncIterator[ProjectRoom]:
    """A core whose default project is ``tmp/<cwd_name>``, new projects under
    ``tmp/projects``, git identity set, data dir ``tmp/data``."""
    root, data_dir = tmp_path / "projects", tmp_path / "data"
    data_dir.mkdir(exist_ok=True)
    settings = load_settings(None, {
        "MUSHER_LLM__PROVIDER": "none", "MUSHER_PROJECTS__ROOT": str(root),
        "MUSHER_PROJECTS__GIT_USER_NAME": "Musher Test",
        "MUSHER_PROJECTS__GIT_USER_EMAIL": "musher@example.org", **env,
    })  # fmt: skip
    db = await Database.open(data_dir / "musher.db", DAEMON_SCHEMA)
    store = await OpStore.open(db, load_or_create(data_dir))
    core = build_core(settings, db, store)
    room = ProjectRoom(core, db, root, data_dir)
    core.registry.provide(tell=room.tell)
    (tmp_path / cwd_name).mkdir(exist_ok=True)
    await ensure_default_project(core, tmp_path / cwd_name)
    try:
        yield room
    finally:
        await core.dispatcher.aclose()
        await db.aclose()
