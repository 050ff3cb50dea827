"""The agent pool's wiring: built from ``[agents]`` and ``[projects]``, telling the rooms
that follow a project, booking spend in the cost book (A1, A2, L5)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from bot.commands.core import StopItem
from bot.commands.pipeline import RoomProjects
from bot.commands.registry import CommandContext
from bot.cost import CostBook
from config.models import Settings
from pipeline.agents.logbook import Logbook
from pipeline.agents.pool import AgentPool
from pipeline.agents.work import Parts
from pipeline.engine import Engine
from pipeline.sandbox import Sandbox, make_sandbox
from pipeline.store import ProjectRecord


def build_agent_pool(
    settings: Settings,
    engine: Engine,
    data_dir: Path,
    say: Callable[[str, str], None],
    costs: CostBook,
) -> AgentPool:
    """The pool (a bus subscriber: add it to the bus); it registers its purge step."""
    network = settings.projects.sandbox_network

    def sandbox_for(record: ProjectRecord) -> Sandbox:
        return make_sandbox(record.sandbox, data_dir=data_dir, network=network)

    parts = Parts(
        engine=engine, config=settings.agents, data_dir=data_dir,
        node=f"daemon:{engine.store.author[:16]}", logbook=Logbook(data_dir),
        sandbox_for=sandbox_for, say=say, record_cost=costs.record_agent,
    )  # fmt: skip
    return AgentPool(parts)


def stop_item(rooms: RoomProjects, pool: AgentPool) -> StopItem:
    """``stop N``: stop the agent on item N of the room's project."""

    async def stop(ctx: CommandContext, number: int) -> str:
        _, project = await rooms.room_project(ctx)
        return await pool.stop_item(project, number, ctx.origin)

    return stop
